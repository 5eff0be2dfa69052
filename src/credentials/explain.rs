//! `d1ctl auth status`: where each value would come from, without the values.

use std::path::PathBuf;

use serde::Serialize;

use super::dotenv::FileState;
use super::resolve::{Lookup, Probe, What};
use super::{Environment, Flags, Request, SecretStore, Source, StoreError};

/// The answer of [`super::explain`], ready for text or JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The environment name.
    pub env: String,
    /// The API token.
    pub token: ValueReport,
    /// The account id.
    pub account_id: ValueReport,
    /// The database id.
    pub database_id: ValueReport,
    /// The dotenv files considered, most specific first.
    pub files: Vec<FileReport>,
    /// Why the OS keyring could not be asked, when it could not (print as a note).
    pub keyring_note: Option<String>,
    /// A `hint:` to print with [`Explanation::keyring_note`].
    pub keyring_hint: Option<String>,
    /// Problems that would make [`super::resolve`] fail even though a value was found, such as an
    /// unreadable dotenv file or a keyring error.
    pub problems: Vec<String>,
}

impl Explanation {
    /// Whether [`super::resolve`] would succeed: every value has a winner and nothing is broken.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
            && [&self.token, &self.account_id, &self.database_id]
                .iter()
                .all(|value| value.winner.is_some())
    }
}

/// How one value resolves.
#[derive(Debug, Clone, Serialize)]
pub struct ValueReport {
    /// `API token`, `account id` or `database id`.
    pub what: String,
    /// Where the value comes from, or `None` when it is missing.
    pub winner: Option<Source>,
    /// Every candidate place, in precedence order.
    pub candidates: Vec<Candidate>,
    /// The places looked, grouped per source, as the error of a missing value lists them.
    pub looked: Vec<String>,
}

/// One candidate place for a value.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The place.
    pub source: Source,
    /// `source` as text, for printing.
    pub place: String,
    /// What the place holds.
    pub state: CandidateState,
}

/// What a candidate place holds (never the value itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateState {
    /// Set, and the value used.
    Wins,
    /// Set, but a place earlier in the list wins.
    Shadowed,
    /// Not set (or empty, or the file does not exist).
    Unset,
    /// The dotenv file cannot be parsed.
    Unreadable,
    /// The keyring could not be asked.
    Unavailable,
}

/// A dotenv file considered.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Why it cannot be used, if it cannot.
    pub error: Option<String>,
}

pub(super) fn explain(
    request: &Request<'_>,
    flags: &Flags<'_>,
    environment: &dyn Environment,
    store: Option<&dyn SecretStore>,
) -> Explanation {
    let lookup = Lookup::new(request, flags, environment, store);
    let mut problems = Vec::new();
    let files = lookup
        .files
        .iter()
        .map(|file| {
            let error = match &file.state {
                FileState::Broken(error) => {
                    problems.push(error.to_string());
                    Some(error.to_string())
                }
                FileState::Absent | FileState::Loaded(_) => None,
            };
            FileReport {
                path: file.path.clone(),
                exists: !matches!(file.state, FileState::Absent),
                error,
            }
        })
        .collect();
    let mut keyring_error = None;
    let token = report(&lookup, What::Token, &mut keyring_error);
    let account_id = report(&lookup, What::AccountId, &mut keyring_error);
    let database_id = report(&lookup, What::DatabaseId, &mut keyring_error);
    let (keyring_note, keyring_hint) = match keyring_error {
        Some(StoreError::Unavailable { message }) => (
            Some(format!("the OS keyring is unavailable: {message}")),
            Some(StoreError::unavailable_hint()),
        ),
        Some(error @ StoreError::Other { .. }) => {
            problems.push(error.to_string());
            (None, None)
        }
        None => (None, None),
    };
    Explanation {
        env: request.env.to_owned(),
        token,
        account_id,
        database_id,
        files,
        keyring_note,
        keyring_hint,
        problems,
    }
}

fn report(lookup: &Lookup<'_>, what: What, keyring_error: &mut Option<StoreError>) -> ValueReport {
    let mut winner = None;
    let mut candidates = Vec::new();
    let mut note = None;
    for place in lookup.plan(what) {
        let source = lookup.source(&place);
        let state = match lookup.probe(what, &place) {
            Probe::Set(_) if winner.is_none() => {
                winner = Some(source.clone());
                CandidateState::Wins
            }
            Probe::Set(_) => CandidateState::Shadowed,
            Probe::Unset => CandidateState::Unset,
            Probe::Unreadable => CandidateState::Unreadable,
            Probe::StoreFailed(error) => {
                if let StoreError::Unavailable { message } = &error {
                    note = Some(message.clone());
                }
                *keyring_error = Some(error);
                CandidateState::Unavailable
            }
        };
        candidates.push(Candidate {
            place: source.to_string(),
            source,
            state,
        });
    }
    ValueReport {
        what: what.label().to_owned(),
        winner,
        candidates,
        looked: lookup.looked(what, note.as_deref()),
    }
}
