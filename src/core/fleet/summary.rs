//! What `status` and `lock status` say of a whole fleet, from one read of every member, and
//! `lock release` over a fleet.

use futures::StreamExt as _;
use serde::Serialize;

use crate::core::fleet::survey::{self, Connect, Group, MemberRead, READ_CONCURRENCY};
use crate::core::ledger::{self, State};
use crate::core::lock::{self, Holder, Lease};
use crate::core::migrations::MigrationSet;
use crate::core::registry::MemberName;

/// One member as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub uuid: Option<String>,
    /// Its group's label: `at 0004_index.sql (4 applied)`, `nothing applied`, `unreadable: …`.
    pub group: String,
    /// What it has applied, in folder order (names).
    pub applied: Vec<String>,
    /// Applied migrations whose file changed after they ran (line endings aside).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checksum_mismatch: Vec<String>,
    /// Its lease while one is live (`null` when free or expired).
    pub lock: Option<Lease>,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A fleet's ledger states.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    /// Members by ledger state, largest group first.
    pub groups: Vec<Group>,
    /// Every member, in fleet order.
    pub members: Vec<MemberStatus>,
}

impl FleetStatus {
    pub fn locked(&self) -> impl Iterator<Item = &MemberStatus> {
        self.members.iter().filter(|m| m.lock.is_some())
    }

    pub fn unreadable(&self) -> impl Iterator<Item = &MemberStatus> {
        self.members.iter().filter(|m| m.error.is_some())
    }

    pub fn edited(&self) -> impl Iterator<Item = &MemberStatus> {
        self.members
            .iter()
            .filter(|m| !m.checksum_mismatch.is_empty())
    }
}

fn live(lease: Option<&Lease>) -> Option<Lease> {
    lease.filter(|lease| !lease.expired()).cloned()
}

/// Every member's ledger state, grouped with [`survey::ledger_label`].
pub fn status(set: &MigrationSet, reads: &[MemberRead]) -> FleetStatus {
    let members = reads
        .iter()
        .map(|read| {
            let group = survey::ledger_label(set, read);
            match &read.read {
                Err(error) => MemberStatus {
                    name: read.member.name.clone(),
                    uuid: read.member.uuid.clone(),
                    group,
                    applied: Vec::new(),
                    checksum_mismatch: Vec::new(),
                    lock: None,
                    error: Some(error.clone()),
                },
                Ok(state) => {
                    let statuses = ledger::compare(set, &state.state, set.layout);
                    MemberStatus {
                        name: read.member.name.clone(),
                        uuid: read.member.uuid.clone(),
                        group,
                        applied: statuses
                            .iter()
                            .filter(|s| s.is_applied())
                            .map(|s| s.name.clone())
                            .collect(),
                        checksum_mismatch: statuses
                            .iter()
                            .filter(|s| {
                                s.state == State::ChecksumMismatch
                                    && s.line_endings_only != Some(true)
                            })
                            .map(|s| s.name.clone())
                            .collect(),
                        lock: live(state.lock.as_ref()),
                        error: None,
                    }
                }
            }
        })
        .collect();
    FleetStatus {
        groups: survey::group_by(reads, &|read| survey::ledger_label(set, read)),
        members,
    }
}

/// One member's lock as `lock status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberLock {
    pub name: String,
    pub uuid: Option<String>,
    /// `null` when free (no lease, or an expired one).
    pub lock: Option<Lease>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The members one holder has locked.
#[derive(Debug, Clone, Serialize)]
pub struct HolderGroup {
    pub holder: Holder,
    /// The longest it has held one of them, in seconds (by the members' clocks).
    pub held_seconds: i64,
    /// When the last of its leases expires unless renewed, in seconds from now.
    pub expires_in_seconds: i64,
    pub members: Vec<String>,
}

/// A fleet's locks.
#[derive(Debug, Clone, Serialize)]
pub struct FleetLocks {
    /// Holders with at least one live lease, most members first.
    pub holders: Vec<HolderGroup>,
    /// Every member, in fleet order.
    pub members: Vec<MemberLock>,
}

impl FleetLocks {
    pub fn locked(&self) -> usize {
        self.holders.iter().map(|h| h.members.len()).sum()
    }

    pub fn unreadable(&self) -> impl Iterator<Item = &MemberLock> {
        self.members.iter().filter(|m| m.error.is_some())
    }
}

/// Every member's live lease, grouped by holder.
pub fn locks(reads: &[MemberRead]) -> FleetLocks {
    let mut holders: Vec<HolderGroup> = Vec::new();
    let members = reads
        .iter()
        .map(|read| {
            let lease = read.read.as_ref().ok().and_then(|r| live(r.lock.as_ref()));
            if let Some(lease) = &lease {
                let held = lease.now - lease.acquired_at;
                let left = lease.expires_at - lease.now;
                match holders.iter_mut().find(|h| h.holder.id == lease.holder.id) {
                    Some(group) => {
                        group.held_seconds = group.held_seconds.max(held);
                        group.expires_in_seconds = group.expires_in_seconds.max(left);
                        group.members.push(read.member.name.clone());
                    }
                    None => holders.push(HolderGroup {
                        holder: lease.holder.clone(),
                        held_seconds: held,
                        expires_in_seconds: left,
                        members: vec![read.member.name.clone()],
                    }),
                }
            }
            MemberLock {
                name: read.member.name.clone(),
                uuid: read.member.uuid.clone(),
                lock: lease,
                error: read.read.as_ref().err().cloned(),
            }
        })
        .collect();
    // Stable: equal counts keep their first-seen order.
    holders.sort_by_key(|h| std::cmp::Reverse(h.members.len()));
    FleetLocks { holders, members }
}

/// What releasing one holder's leases over a fleet did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Released {
    /// Members whose lease of that holder was removed.
    pub released: Vec<String>,
    /// Members it could not be released on, with why.
    pub failed: Vec<(String, String)>,
}

/// Releases the lease `id` holds on each of `members` (one batch each, at most
/// [`READ_CONCURRENCY`] at a time); a member whose lease went meanwhile is left out of both lists.
pub async fn release(members: &[&MemberName], connect: &Connect<'_>, id: &str) -> Released {
    let outcomes: Vec<(String, Result<bool, String>)> =
        futures::stream::iter(members.iter().map(|member| async move {
            let outcome = match connect(member) {
                Ok(backend) => lock::force_release(backend.as_ref(), id)
                    .await
                    .map_err(|error| error.to_string()),
                Err(error) => Err(format!("{error:#}")),
            };
            (member.name.clone(), outcome)
        }))
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut released = Released::default();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(true) => released.released.push(name),
            Ok(false) => {}
            Err(error) => released.failed.push((name, error)),
        }
    }
    released
}
