//! Reading every member of a fleet (one request each on a tracked database), and grouping
//! what was read: by ledger state for `status`, by schema fingerprint for `drift`, by lock for
//! `lock status`.

use futures::StreamExt as _;
use serde::Serialize;

use crate::backend::Backend;
use crate::core::fleet::fingerprint;
use crate::core::ledger::{self, EnvironmentRead, Ledgers};
use crate::core::migrations::MigrationSet;
use crate::core::registry::MemberName;

/// Builds a member's backend (the command layer owns credentials and clients).
pub type Connect<'a> = dyn Fn(&MemberName) -> anyhow::Result<Box<dyn Backend>> + Send + Sync + 'a;

/// Hears about each member read (a progress bar).
pub trait SurveyProgress: Send + Sync {
    fn started(&self, _members: usize) {}
    fn read_one(&self) {}
    fn finished(&self) {}
}

/// One member as read.
pub struct MemberRead {
    pub member: MemberName,
    /// `Err`: why it could not be read.
    pub read: Result<EnvironmentRead, String>,
}

/// How many members are read at once: enough to keep the budget busy over a slow network,
/// few enough not to hold many connections.
pub const READ_CONCURRENCY: usize = 8;

/// Reads every member (in order), at most [`READ_CONCURRENCY`] at a time.
pub async fn read_all(
    members: &[MemberName],
    connect: &Connect<'_>,
    ledgers: &Ledgers,
    progress: &dyn SurveyProgress,
) -> Vec<MemberRead> {
    progress.started(members.len());
    let reads = futures::stream::iter(members.iter().map(|member| async move {
        let read = match connect(member) {
            Ok(backend) => ledgers
                .read_with_schema(backend.as_ref(), true)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(format!("{error:#}")),
        };
        progress.read_one();
        MemberRead {
            member: member.clone(),
            read,
        }
    }))
    .buffered(READ_CONCURRENCY)
    .collect()
    .await;
    progress.finished();
    reads
}

/// Members that share one value, in fleet order.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// What they share, in words: `at 0012_orders.sql`, `schema A`, `unreadable: …`.
    pub label: String,
    pub members: Vec<String>,
}

/// Groups members by `key` (members whose key is the same land in one group), largest group
/// first, then in order of first appearance.
pub fn group_by(reads: &[MemberRead], key: &dyn Fn(&MemberRead) -> String) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for read in reads {
        let label = key(read);
        match groups.iter_mut().find(|g| g.label == label) {
            Some(group) => group.members.push(read.member.name.clone()),
            None => groups.push(Group {
                label,
                members: vec![read.member.name.clone()],
            }),
        }
    }
    // Stable: equal sizes keep their first-seen order.
    groups.sort_by_key(|g| std::cmp::Reverse(g.members.len()));
    groups
}

/// A member's ledger state in words: the last migration it has applied, and how many.
pub fn ledger_label(set: &MigrationSet, read: &MemberRead) -> String {
    match &read.read {
        Err(error) => format!("unreadable: {error}"),
        Ok(read) => {
            let applied: Vec<String> = ledger::compare(set, &read.state, set.layout)
                .into_iter()
                .filter(ledger::MigrationStatus::is_applied)
                .map(|s| s.name)
                .collect();
            match applied.last() {
                None => "nothing applied".to_owned(),
                Some(last) => format!("at {last} ({} applied)", applied.len()),
            }
        }
    }
}

/// A member's schema fingerprint (with its ledgers), or why it could not be read.
pub fn fingerprint_of(ledgers: &Ledgers, read: &MemberRead) -> Result<String, String> {
    read.read
        .as_ref()
        .map(|r| fingerprint::of(&r.snapshot, &r.state, ledgers))
        .map_err(Clone::clone)
}
