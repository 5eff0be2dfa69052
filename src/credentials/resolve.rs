//! The lookup plan shared by [`super::resolve`] and [`super::explain`].

use super::dotenv::{DotenvFile, FileState, file_paths};
use super::{
    ACCOUNT_ID_VARIABLE, CredentialError, Credentials, DATABASE_ID_VARIABLE, Environment, Flags,
    KEYRING_SERVICE, Request, Resolved, Secret, SecretStore, Source, StoreError, env_suffix,
    token_variable_names,
};

/// The three values resolved for an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum What {
    Token,
    AccountId,
    DatabaseId,
}

impl What {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Token => "API token",
            Self::AccountId => "account id",
            Self::DatabaseId => "database id",
        }
    }

    fn config_key(self) -> &'static str {
        match self {
            Self::Token => "token_env",
            Self::AccountId => "account_id",
            Self::DatabaseId => "database_id",
        }
    }
}

/// One place a value may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Place {
    Flag,
    ProcessEnv(String),
    File { file: usize, variable: String },
    Config,
    Keyring,
}

/// What a place holds.
#[derive(Debug)]
pub(super) enum Probe {
    Set(String),
    Unset,
    /// The place is a dotenv file that cannot be parsed.
    Unreadable,
    /// The keyring could not be asked.
    StoreFailed(StoreError),
}

/// Everything the lookups need, with the dotenv files read once.
pub(super) struct Lookup<'r> {
    pub(super) request: &'r Request<'r>,
    flags: &'r Flags<'r>,
    environment: &'r dyn Environment,
    pub(super) store: Option<&'r dyn SecretStore>,
    pub(super) files: Vec<DotenvFile>,
}

impl<'r> Lookup<'r> {
    pub(super) fn new(
        request: &'r Request<'r>,
        flags: &'r Flags<'r>,
        environment: &'r dyn Environment,
        store: Option<&'r dyn SecretStore>,
    ) -> Self {
        let files = file_paths(request.config_dir, request.env)
            .into_iter()
            .map(DotenvFile::load)
            .collect();
        Self {
            request,
            flags,
            environment,
            store,
            files,
        }
    }

    /// The first unreadable dotenv file, as an error.
    pub(super) fn take_broken_file(&mut self) -> Option<CredentialError> {
        self.files.iter_mut().find_map(|file| {
            if matches!(file.state, FileState::Broken(_)) {
                match std::mem::replace(&mut file.state, FileState::Absent) {
                    FileState::Broken(error) => Some(error),
                    FileState::Absent | FileState::Loaded(_) => None,
                }
            } else {
                None
            }
        })
    }

    fn flag(&self, what: What) -> Option<&'r str> {
        match what {
            What::Token => None,
            What::AccountId => self.flags.account_id,
            What::DatabaseId => self.flags.database_id,
        }
    }

    fn config_value(&self, what: What) -> Option<&'r str> {
        match what {
            What::Token => None,
            What::AccountId => self.request.account_id,
            What::DatabaseId => self.request.database_id,
        }
    }

    /// The places for `what`, in precedence order. The config place is listed even when
    /// `environments.toml` lacks the key, so that a missing value can say it was looked for.
    pub(super) fn plan(&self, what: What) -> Vec<Place> {
        let variable_sources = |names: &[String], places: &mut Vec<Place>| {
            places.extend(names.iter().cloned().map(Place::ProcessEnv));
            for file in 0..self.files.len() {
                places.extend(names.iter().map(|variable| Place::File {
                    file,
                    variable: variable.clone(),
                }));
            }
        };
        let mut places = Vec::new();
        match what {
            What::Token => {
                variable_sources(&token_variable_names(self.request), &mut places);
                if self.store.is_some() {
                    places.push(Place::Keyring);
                }
            }
            What::AccountId | What::DatabaseId => {
                let generic = if what == What::AccountId {
                    ACCOUNT_ID_VARIABLE
                } else {
                    DATABASE_ID_VARIABLE
                };
                if self.flag(what).is_some() {
                    places.push(Place::Flag);
                }
                let specific = format!("{generic}_{}", env_suffix(self.request.env));
                variable_sources(&[specific], &mut places);
                places.push(Place::Config);
                variable_sources(&[generic.to_owned()], &mut places);
            }
        }
        places
    }

    pub(super) fn source(&self, place: &Place) -> Source {
        match place {
            Place::Flag => Source::Flag,
            Place::ProcessEnv(variable) => Source::ProcessEnv {
                variable: variable.clone(),
            },
            Place::File { file, variable } => Source::File {
                path: self.files[*file].path.clone(),
                variable: variable.clone(),
            },
            Place::Config => Source::Config {
                path: self.request.config_path.to_owned(),
            },
            Place::Keyring => Source::Keyring {
                service: KEYRING_SERVICE.to_owned(),
                entry: self.request.env.to_owned(),
            },
        }
    }

    /// What `place` holds for `what`. Only [`Place::Keyring`] talks to anything outside the
    /// process.
    pub(super) fn probe(&self, what: What, place: &Place) -> Probe {
        let found = |value: Option<&str>| {
            value
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map_or(Probe::Unset, |value| Probe::Set(value.to_owned()))
        };
        match place {
            Place::Flag => found(self.flag(what)),
            Place::ProcessEnv(variable) => found(self.environment.var(variable).as_deref()),
            Place::File { file, variable } => {
                let file = &self.files[*file];
                if matches!(file.state, FileState::Broken(_)) {
                    Probe::Unreadable
                } else {
                    found(file.get(variable))
                }
            }
            Place::Config => found(self.config_value(what)),
            Place::Keyring => match self.store.map(|store| store.get(self.request.env)) {
                None | Some(Ok(None)) => Probe::Unset,
                Some(Ok(Some(secret))) => found(Some(secret.expose())),
                Some(Err(error)) => Probe::StoreFailed(error),
            },
        }
    }

    /// Human-readable places looked for `what`, one per source, in precedence order.
    /// `keyring_note` is the reason the keyring could not be asked, if it could not.
    pub(super) fn looked(&self, what: What, keyring_note: Option<&str>) -> Vec<String> {
        let plan = self.plan(what);
        let mut lines = Vec::new();
        let mut index = 0;
        while index < plan.len() {
            let place = &plan[index];
            // Group consecutive variables of the same container.
            let mut names = Vec::new();
            let mut next = index;
            while let Some(candidate) = plan.get(next) {
                match (place, candidate) {
                    (Place::ProcessEnv(_), Place::ProcessEnv(name)) => names.push(name.clone()),
                    (
                        Place::File { file, .. },
                        Place::File {
                            file: other,
                            variable,
                        },
                    ) if file == other => names.push(variable.clone()),
                    _ => break,
                }
                next += 1;
            }
            let quoted = names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ");
            match place {
                Place::Flag => lines.push("command-line flag".to_owned()),
                Place::ProcessEnv(_) => lines.push(format!(
                    "environment variable{} {quoted}",
                    if names.len() == 1 { "" } else { "s" }
                )),
                Place::File { file, .. } => {
                    let file = &self.files[*file];
                    let state = match file.state {
                        FileState::Absent => " (no such file)",
                        FileState::Loaded(_) => "",
                        FileState::Broken(_) => " (unreadable)",
                    };
                    lines.push(format!("{quoted} in `{}`{state}", file.path.display()));
                }
                Place::Config => lines.push(format!(
                    "`{}` in the `[env.{}]` table of `{}`",
                    what.config_key(),
                    self.request.env,
                    self.request.config_path.display()
                )),
                Place::Keyring => {
                    let source = self.source(place);
                    lines.push(match keyring_note {
                        Some(note) => format!("{source}: unavailable ({note})"),
                        None => source.to_string(),
                    });
                }
            }
            index = next.max(index + 1);
        }
        lines
    }
}

pub(super) fn resolve(
    request: &Request<'_>,
    flags: &Flags<'_>,
    environment: &dyn Environment,
    store: Option<&dyn SecretStore>,
) -> Result<Credentials, CredentialError> {
    let mut lookup = Lookup::new(request, flags, environment, store);
    if let Some(error) = lookup.take_broken_file() {
        return Err(error);
    }
    let token = first(&lookup, What::Token)?;
    check_token(request.env, &token)?;
    let account_id = first(&lookup, What::AccountId)?;
    let database_id = first(&lookup, What::DatabaseId)?;
    Ok(Credentials {
        token: Resolved {
            value: Secret::new(token.value),
            source: token.source,
        },
        account_id,
        database_id,
    })
}

/// Refuses a token that cannot travel in an `Authorization` header (a control character such as
/// an embedded newline, or a non-ASCII character) here, where its source is known: sent, it
/// would fail inside the HTTP client as if the network were down. The token is never quoted.
fn check_token(env: &str, token: &Resolved<String>) -> Result<(), CredentialError> {
    let Some((position, bad)) = token
        .value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() || !c.is_ascii())
    else {
        return Ok(());
    };
    let character = match bad {
        '\n' => "a newline".to_owned(),
        '\r' => "a carriage return".to_owned(),
        '\t' => "a tab".to_owned(),
        c if c.is_control() => format!("a control character (U+{:04X})", u32::from(c)),
        _ => "a non-ASCII character".to_owned(),
    };
    let line = match &token.source {
        Source::File { path, variable } => super::dotenv::line_of_assignment(path, variable),
        _ => None,
    };
    Err(CredentialError::BadToken {
        env: env.to_owned(),
        origin: Box::new(token.source.clone()),
        line,
        character,
        position: position + 1,
    })
}

/// The first place in the plan that holds a value.
fn first(lookup: &Lookup<'_>, what: What) -> Result<Resolved<String>, CredentialError> {
    let mut keyring_note = None;
    for place in lookup.plan(what) {
        match lookup.probe(what, &place) {
            Probe::Set(value) => {
                return Ok(Resolved {
                    value,
                    source: lookup.source(&place),
                });
            }
            Probe::Unset | Probe::Unreadable => {}
            Probe::StoreFailed(StoreError::Unavailable { message }) => {
                keyring_note = Some(message);
            }
            Probe::StoreFailed(error) => return Err(CredentialError::Store(error)),
        }
    }
    Err(CredentialError::Missing {
        env: lookup.request.env.to_owned(),
        what: what.label().to_owned(),
        looked: lookup.looked(what, keyring_note.as_deref()),
        keyring_unavailable: keyring_note,
    })
}
