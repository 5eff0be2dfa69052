//! The last rehearsal of each env, kept under `.d1ctl/rehearsals/<env>.json`, and what it says
//! about a pending set: a record counts only for the same migrations with the same checksums.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::core::migrations::Migration;
use crate::core::rehearse::{Rehearsal, RehearsalError, records_dir};

/// `.d1ctl/rehearsals/<env>.json` (env names are letters, digits, `-` and `_`).
pub fn path(root: &Path, env: &str) -> PathBuf {
    records_dir(root).join(format!("{env}.json"))
}

/// Writes the record of `rehearsal`, replacing the env's previous one atomically.
pub fn save(root: &Path, rehearsal: &Rehearsal) -> Result<PathBuf, RehearsalError> {
    let destination = path(root, &rehearsal.environment);
    let write_error = |source: std::io::Error| RehearsalError::Record {
        path: destination.display().to_string(),
        source,
    };
    let dir = records_dir(root);
    fs_err::create_dir_all(&dir).map_err(write_error)?;
    let text = serde_json::to_string_pretty(rehearsal)
        .map_err(|error| write_error(std::io::Error::other(error)))?;
    let partial = crate::core::temp::TempFile::new(&dir, &rehearsal.environment, "json.partial");
    fs_err::write(partial.path(), format!("{text}\n")).map_err(write_error)?;
    partial.persist(&destination).map_err(write_error)?;
    Ok(destination)
}

#[derive(Debug, thiserror::Error)]
#[error("could not read the rehearsal record `{path}`: {message}")]
pub struct ReadError {
    pub path: String,
    pub message: String,
}

/// The env's last rehearsal; `None` when it was never rehearsed.
pub fn load(root: &Path, env: &str) -> Result<Option<Rehearsal>, ReadError> {
    let file = path(root, env);
    let text = match fs_err::read_to_string(&file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(ReadError {
                path: file.display().to_string(),
                message: error.to_string(),
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| ReadError {
            path: file.display().to_string(),
            message: error.to_string(),
        })
}

/// Whether `rehearsal` was of exactly `pending`: the same names in the same order, each with the
/// same checksum (an edited file is a different migration).
pub fn same_pending_set(rehearsal: &Rehearsal, pending: &[&Migration]) -> bool {
    rehearsal.migrations.len() == pending.len()
        && rehearsal
            .migrations
            .iter()
            .zip(pending)
            .all(|(rehearsed, migration)| {
                rehearsed.name == migration.name && rehearsed.sha256 == migration.sha256
            })
}

/// What a checklist says about rehearsing a pending set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RehearsalCheck {
    /// `passed` / `failed` (a record of this pending set), `not_rehearsed`, `outdated` (the last
    /// record is of other migrations or other file contents) or `nothing_pending`.
    pub status: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rehearsed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The command that rehearses this pending set.
    pub command: String,
}

impl RehearsalCheck {
    /// A recorded rehearsal of this pending set that did not pass.
    pub fn blocks(&self) -> bool {
        self.status == "failed"
    }
}

/// The checklist's view of `last` for `pending` on `env`.
pub fn check(last: Option<&Rehearsal>, env: &str, pending: &[&Migration]) -> RehearsalCheck {
    let command = format!("d1ctl rehearse --to {env}");
    if pending.is_empty() {
        return RehearsalCheck {
            status: "nothing_pending",
            detail: "nothing to rehearse".to_owned(),
            rehearsed_at: None,
            duration_ms: None,
            command,
        };
    }
    match last {
        Some(rehearsal) if same_pending_set(rehearsal, pending) => RehearsalCheck {
            status: if rehearsal.passed { "passed" } else { "failed" },
            detail: rehearsal.summary(),
            rehearsed_at: Some(rehearsal.rehearsed_at.clone()),
            duration_ms: Some(rehearsal.duration_ms),
            command,
        },
        Some(rehearsal) => RehearsalCheck {
            status: "outdated",
            detail: format!(
                "the last rehearsal ({}) was of other migrations or other file contents; run `{command}` to rehearse these on a copy of its data",
                rehearsal.rehearsed_at
            ),
            rehearsed_at: Some(rehearsal.rehearsed_at.clone()),
            duration_ms: None,
            command,
        },
        None => RehearsalCheck {
            status: "not_rehearsed",
            detail: format!(
                "not rehearsed: run `{command}` to apply these migrations to a copy of its data first"
            ),
            rehearsed_at: None,
            duration_ms: None,
            command,
        },
    }
}
