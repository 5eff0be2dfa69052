//! Fleets: one env of many D1 databases (one per tenant). Finding the members, reading them
//! all (`survey`), their state as one comparable value (`fingerprint`), what that says of the
//! fleet (`summary`) and what a promotion would give each (`plan`), promoting them at the
//! account's request budget (`rollout`), and undoing a rollout (`rollback`).

pub mod fingerprint;
pub mod plan;
pub mod rollback;
pub mod rollout;
pub mod summary;
pub mod survey;

use std::path::Path;

use crate::core::registry::{FleetSpec, MemberName, parse_fleet_file};
use crate::d1::client::{D1Client, D1Error};

/// The engine's reporter for one member's session: nothing to show (the fleet's command
/// reports members), nothing to ask (the fleet was confirmed once).
pub(crate) struct Unattended;

impl crate::core::apply::ApplyReporter for Unattended {}

impl<P> crate::core::write::WriteReporter<P> for Unattended {
    fn show_plan(&self, _plan: &P, _changed: bool) {}

    fn confirm(&self, _env: &crate::core::registry::Environment, _why: &str, yes: bool) -> bool {
        yes
    }
}

/// Why a fleet's members could not be found.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("could not read the fleet file `{path}`: {message}")]
    File { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    FileLine {
        path: String,
        line: usize,
        message: String,
    },
    #[error("could not list the account's databases")]
    List(#[source] D1Error),
    #[error("{} of the fleet's databases do not exist on the account: {}", .missing.len(), .missing.join(", "))]
    Missing { missing: Vec<String> },
    #[error("the fleet has no databases ({0})")]
    Empty(String),
}

impl FleetError {
    pub fn hint(&self) -> Option<String> {
        match self {
            FleetError::File { .. } => Some("check `fleet.file` in environments.toml".to_owned()),
            FleetError::FileLine { .. } => {
                Some("write one database name, or `name=uuid`, per line".to_owned())
            }
            FleetError::List(error) => error.hint(),
            FleetError::Missing { .. } => Some(
                "create them (`wrangler d1 create NAME`), or take them out of the fleet".to_owned(),
            ),
            FleetError::Empty(_) => {
                Some("check the fleet's `name_prefix` against `wrangler d1 list`".to_owned())
            }
        }
    }
}

/// The members a fleet file lists.
pub fn read_file(path: &Path) -> Result<Vec<MemberName>, FleetError> {
    let text = fs_err::read_to_string(path).map_err(|error| FleetError::File {
        path: path.display().to_string(),
        message: error.to_string(),
    })?;
    parse_fleet_file(&text).map_err(|(line, message)| FleetError::FileLine {
        path: path.display().to_string(),
        line,
        message,
    })
}

/// The most Cloudflare's list operation returns per page (§4).
const LIST_PAGE: u32 = 10_000;

/// Every database of the account whose name `keep` accepts, paging through the list
/// operation with its `name` search (one request per 10,000 databases).
async fn list(
    client: &D1Client,
    search: Option<&str>,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<MemberName>, FleetError> {
    let mut found = Vec::new();
    let mut page = 1;
    loop {
        let databases = client
            .list_databases(search, page, LIST_PAGE)
            .await
            .map_err(FleetError::List)?;
        // Paged until a page comes back empty: a server that answers fewer per page than
        // asked (Cloudflare documents the cap as 10,000, but does not promise it) loses no
        // member, for one request more per listing.
        let more = !databases.is_empty();
        found.extend(
            databases
                .into_iter()
                .filter(|d| keep(&d.name))
                .map(|d| MemberName {
                    name: d.name,
                    uuid: Some(d.uuid),
                }),
        );
        if !more {
            return Ok(found);
        }
        page += 1;
    }
}

/// The fleet's members, each with its uuid. A prefix fleet is listed from the account (and
/// sorted by name, digits by value, so that every run takes them in the same order); a list
/// keeps its order, and names given without a uuid are looked up in the account's list.
pub async fn members(spec: &FleetSpec, client: &D1Client) -> Result<Vec<MemberName>, FleetError> {
    let named = match spec {
        FleetSpec::Prefix(prefix) => {
            // The `name` search is not documented as a prefix match: filter here as well.
            let mut members = list(client, Some(prefix), &|name| name.starts_with(prefix)).await?;
            members.sort_by(|a, b| natural_order(&a.name, &b.name));
            if members.is_empty() {
                return Err(FleetError::Empty(spec.describe()));
            }
            return Ok(members);
        }
        FleetSpec::Databases(names) => names.clone(),
        FleetSpec::File(path) => read_file(path)?,
    };
    if named.is_empty() {
        return Err(FleetError::Empty(spec.describe()));
    }
    if named.iter().all(|m| m.uuid.is_some()) {
        return Ok(named);
    }
    let wanted: std::collections::HashSet<&str> = named
        .iter()
        .filter(|m| m.uuid.is_none())
        .map(|m| m.name.as_str())
        .collect();
    let listed = list(client, None, &|name| wanted.contains(name)).await?;
    let mut missing = Vec::new();
    let members = named
        .iter()
        .filter_map(|member| {
            if member.uuid.is_some() {
                return Some(member.clone());
            }
            let found = listed.iter().find(|l| l.name == member.name).cloned();
            if found.is_none() {
                missing.push(member.name.clone());
            }
            found
        })
        .collect();
    if missing.is_empty() {
        Ok(members)
    } else {
        Err(FleetError::Missing { missing })
    }
}

/// Names in the order people count them: `tenant-2` before `tenant-10`.
pub fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    let chunks = |text: &str| -> Vec<(bool, String)> {
        let mut chunks: Vec<(bool, String)> = Vec::new();
        for c in text.chars() {
            let digit = c.is_ascii_digit();
            match chunks.last_mut() {
                Some((was_digit, chunk)) if *was_digit == digit => chunk.push(c),
                _ => chunks.push((digit, c.to_string())),
            }
        }
        chunks
    };
    let (left, right) = (chunks(a), chunks(b));
    for ((left_digit, left), (right_digit, right)) in left.iter().zip(&right) {
        let order = if *left_digit && *right_digit {
            let trim = |s: &str| s.trim_start_matches('0').len();
            trim(left).cmp(&trim(right)).then_with(|| {
                left.trim_start_matches('0')
                    .cmp(right.trim_start_matches('0'))
            })
        } else {
            left.cmp(right)
        };
        if order != std::cmp::Ordering::Equal {
            return order;
        }
    }
    left.len().cmp(&right.len()).then_with(|| a.cmp(b))
}

/// `tenant-17, tenant-903, … and 12 more`: at most `shown` names of a group.
pub fn name_list(names: &[&str], shown: usize) -> String {
    let mut text = names
        .iter()
        .take(shown)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > shown {
        text.push_str(&format!(" and {} more", names.len() - shown));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_with_digits_by_value() {
        let mut names = vec!["tenant-10", "tenant-2", "tenant-1", "tenant-002b", "acme"];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(
            names,
            ["acme", "tenant-1", "tenant-2", "tenant-002b", "tenant-10"]
        );
    }

    #[test]
    fn long_name_lists_are_cut() {
        assert_eq!(name_list(&["a", "b", "c"], 2), "a, b and 1 more");
        assert_eq!(name_list(&["a"], 2), "a");
    }
}
