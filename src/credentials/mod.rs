//! Credential resolution: where the API token, the account id and the database id of an
//! environment come from.
//!
//! Values are looked up per environment, in this order of sources:
//!
//! 1. command-line flags (account and database id only, see [`Flags`]; never the token);
//! 2. the process environment;
//! 3. `.dev.vars.<env>`, then `.dev.vars`, then `.env`, in the folder of `environments.toml`.
//!    These files are parsed into a map with [`dotenvy::from_path_iter`] and are **never**
//!    injected into the process environment;
//! 4. the OS keyring (service [`KEYRING_SERVICE`], one entry per environment), token only.
//!
//! Within each source the token is looked up under these names, first match wins:
//! `CLOUDFLARE_D1_TOKEN_<ENV>`, the environment's `token_env` variable, `CLOUDFLARE_D1_TOKEN`,
//! `CLOUDFLARE_API_TOKEN` (`<ENV>` is the environment name upper-cased, with every character
//! other than a letter or a digit, such as `-`, replaced by `_`; see [`env_suffix`]).
//!
//! The account id and the database id follow a different rule, so that a stray exported generic
//! variable never retargets an environment that names its database: a per-environment variable
//! (`CLOUDFLARE_ACCOUNT_ID_<ENV>`, `CLOUDFLARE_DATABASE_ID_<ENV>`) from any source wins over the
//! value in `environments.toml`, which wins over the generic `CLOUDFLARE_ACCOUNT_ID` /
//! `CLOUDFLARE_DATABASE_ID`.
//!
//! Values are trimmed; an empty value counts as unset.
//!
//! Typical use from a command:
//!
//! ```no_run
//! use std::path::Path;
//! use d1ctl::credentials::{self, KeyringStore, ProcessEnvironment, Request};
//!
//! let request = Request {
//!     env: "staging",
//!     config_dir: Path::new("."),
//!     token_env: None,
//!     account_id: Some("0123456789abcdef0123456789abcdef"),
//!     database_id: None,
//!     config_path: Path::new("environments.toml"),
//! };
//! let store = KeyringStore::new();
//! match credentials::resolve(&request, &ProcessEnvironment, Some(&store)) {
//!     Ok(found) => {
//!         let _bearer = found.token.value.expose(); // only ever into the HTTP header
//!         let _where = found.token.source.to_string(); // safe to print
//!     }
//!     Err(error) => {
//!         let _message = error.to_string(); // lists every place looked
//!         let _hint = error.hint();
//!     }
//! }
//! ```

mod dotenv;
mod explain;
mod prompt;
mod resolve;
mod store;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use explain::{Candidate, CandidateState, Explanation, FileReport, ValueReport};
pub use prompt::read_secret_from_stdin_or_prompt;
pub use store::{
    KEYRING_NAME, KeyringStore, MemoryStore, SecretStore, StoreError, keyring_round_trip_check,
};

/// The OS keyring service name under which `d1ctl auth login ENV` stores one entry per
/// environment (the entry name is the environment name).
pub const KEYRING_SERVICE: &str = "d1ctl";

/// Generic token variable of `d1ctl`.
pub const TOKEN_VARIABLE: &str = "CLOUDFLARE_D1_TOKEN";
/// wrangler's token variable, honoured as the last fallback name.
pub const WRANGLER_TOKEN_VARIABLE: &str = "CLOUDFLARE_API_TOKEN";
/// Generic account id variable (wrangler's).
pub const ACCOUNT_ID_VARIABLE: &str = "CLOUDFLARE_ACCOUNT_ID";
/// Generic database id variable.
pub const DATABASE_ID_VARIABLE: &str = "CLOUDFLARE_DATABASE_ID";

/// An API token. Its `Debug` output is `Secret(****)`, it has no `Display`, and the only way to
/// read it is [`Secret::expose`], which should be called only where the token is sent (the
/// `Authorization` header) or stored (the keyring).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The token itself. Never log, print or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(****)")
    }
}

/// Where a value came from. Its `Display` is a short phrase for messages and `auth status`, for
/// example ``environment variable `CLOUDFLARE_D1_TOKEN_STAGING` `` or
/// ``OS keyring (service `d1ctl`, entry `staging`)``. It never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A command-line flag (see [`Flags`]).
    Flag,
    /// A variable of the process environment.
    ProcessEnv {
        /// The variable name.
        variable: String,
    },
    /// A variable in a dotenv file (`.dev.vars.<env>`, `.dev.vars` or `.env`).
    File {
        /// The file, as `config_dir.join(name)`.
        path: PathBuf,
        /// The variable name.
        variable: String,
    },
    /// An entry of the OS keyring.
    Keyring {
        /// Always [`KEYRING_SERVICE`].
        service: String,
        /// The environment name.
        entry: String,
    },
    /// The environment's table in `environments.toml`.
    Config {
        /// The path of `environments.toml`.
        path: PathBuf,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => formatter.write_str("command-line flag"),
            Self::ProcessEnv { variable } => write!(formatter, "environment variable `{variable}`"),
            Self::File { path, variable } => {
                write!(formatter, "`{}` (`{variable}`)", path.display())
            }
            Self::Keyring { service, entry } => {
                write!(
                    formatter,
                    "OS keyring (service `{service}`, entry `{entry}`)"
                )
            }
            Self::Config { path } => write!(formatter, "`{}`", path.display()),
        }
    }
}

/// A value and the place it came from.
#[derive(Debug, Clone)]
pub struct Resolved<T> {
    /// The value.
    pub value: T,
    /// Where it came from; print this, never a secret value.
    pub source: Source,
}

/// What to resolve: one environment, with what `environments.toml` says about it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The environment name, e.g. `staging`.
    pub env: &'a str,
    /// The folder of `environments.toml`, where `.dev.vars`, `.dev.vars.<env>` and `.env` live.
    pub config_dir: &'a Path,
    /// The environment's `token_env` key: an extra variable name to read the token from.
    pub token_env: Option<&'a str>,
    /// The environment's `account_id` key, if `environments.toml` gives it.
    pub account_id: Option<&'a str>,
    /// The environment's `database_id` key, if `environments.toml` gives it.
    pub database_id: Option<&'a str>,
    /// The path of `environments.toml`, reported as [`Source::Config`].
    pub config_path: &'a Path,
}

/// Values given on the command line, which beat every other source. There is deliberately no
/// token flag: a token on the command line leaks through the process list and shell history.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags<'a> {
    /// `--account-id`, if given.
    pub account_id: Option<&'a str>,
    /// `--database-id`, if given.
    pub database_id: Option<&'a str>,
}

/// Everything needed to talk to D1 for one environment.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The API token (`Authorization: Bearer`).
    pub token: Resolved<Secret>,
    /// The Cloudflare account id.
    pub account_id: Resolved<String>,
    /// The D1 database id.
    pub database_id: Resolved<String>,
}

/// Read access to environment variables. Use [`ProcessEnvironment`] in the program and a
/// `HashMap<String, String>` in tests.
pub trait Environment {
    /// The value of variable `name`, or `None` when it is unset (or not valid UTF-8).
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment (read only; nothing in this module ever writes it).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: BuildHasher> Environment for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A credential could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No source holds the value. The message lists every place looked, one per line.
    #[error("no {what} for environment `{env}`; looked in:{}", bullet_list(looked))]
    Missing {
        /// The environment name.
        env: String,
        /// `API token`, `account id` or `database id`.
        what: String,
        /// Every place looked, in precedence order.
        looked: Vec<String>,
        /// Why the OS keyring could not be asked, when it could not.
        keyring_unavailable: Option<String>,
    },
    /// A dotenv file exists but cannot be read or parsed. The message never quotes the file's
    /// content, which may hold a secret.
    #[error("cannot read `{}`{}: {message}", path.display(), line.map(|line| format!(", line {line}")).unwrap_or_default())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the syntax error, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The token holds a character no HTTP header may carry; it is not sent. The message names
    /// the source and the character's kind, never the token.
    #[error("the API token for environment `{env}` from {origin}{} contains {character} (character {position}); it was not sent", line.map(|line| format!(", line {line}")).unwrap_or_default())]
    BadToken {
        /// The environment name.
        env: String,
        /// Where the token came from (boxed: it is the largest variant).
        origin: Box<Source>,
        /// The 1-based line of the assignment, for a dotenv file.
        line: Option<usize>,
        /// `a newline`, `a control character (U+0001)`, …
        character: String,
        /// The 1-based position of that character in the token.
        position: usize,
    },
    /// The OS keyring failed for a reason other than being unavailable.
    #[error(transparent)]
    Store(StoreError),
    /// `auth login` could not read a token (see [`read_secret_from_stdin_or_prompt`]).
    #[error("cannot read the token: {message}")]
    Input {
        /// The env the token was for.
        env: String,
        /// What went wrong.
        message: String,
    },
}

impl CredentialError {
    /// A `hint:` line (or a few) to print after the error, if there is advice to give.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Missing {
                env,
                what,
                keyring_unavailable,
                ..
            } => {
                let suffix = env_suffix(env);
                let mut hint = match what.as_str() {
                    "API token" => format!(
                        "run `d1ctl auth login {env}`, or set `{TOKEN_VARIABLE}_{suffix}` in the \
                         environment or in `.dev.vars.{env}`"
                    ),
                    "account id" => format!(
                        "set `account_id` in the `[env.{env}]` table of `environments.toml`, or \
                         `{ACCOUNT_ID_VARIABLE}_{suffix}` in the environment or in `.dev.vars.{env}`"
                    ),
                    _ => format!(
                        "set `database_id` in the `[env.{env}]` table of `environments.toml`, or \
                         `{DATABASE_ID_VARIABLE}_{suffix}` in the environment or in `.dev.vars.{env}`"
                    ),
                };
                if keyring_unavailable.is_some() {
                    hint.push('\n');
                    hint.push_str(&StoreError::unavailable_hint());
                }
                Some(hint)
            }
            Self::BadFile { .. } => Some(
                "the file uses dotenv syntax: one `NAME=value` per line, `#` comments, values \
                 with spaces or `#` in quotes"
                    .to_owned(),
            ),
            Self::Store(error) => error.hint(),
            Self::BadToken { env, origin, .. } => Some(match origin.as_ref() {
                Source::Keyring { .. } => format!(
                    "store the token again without the stray character: `d1ctl auth login {env}`"
                ),
                _ => format!(
                    "fix the value at {origin}: an API token is letters, digits, `-` and `_` on one line"
                ),
            }),
            Self::Input { env, .. } => Some(format!(
                "type the token at the hidden prompt, or pipe it: `printf %s \"$TOKEN\" | d1ctl auth login {env}`"
            )),
        }
    }
}

fn bullet_list(items: &[String]) -> String {
    let mut list = String::new();
    for item in items {
        list.push_str("\n  - ");
        list.push_str(item);
    }
    list
}

/// The per-environment suffix of variable names: `staging` → `STAGING`, `pr-42` → `PR_42`
/// (ASCII letters upper-cased, digits kept, anything else becomes `_`).
pub fn env_suffix(env: &str) -> String {
    env.chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The token variable names for `request`, in precedence order, without duplicates:
/// `CLOUDFLARE_D1_TOKEN_<ENV>`, `token_env`, `CLOUDFLARE_D1_TOKEN`, `CLOUDFLARE_API_TOKEN`.
pub fn token_variable_names(request: &Request<'_>) -> Vec<String> {
    let mut names = vec![format!("{TOKEN_VARIABLE}_{}", env_suffix(request.env))];
    if let Some(custom) = request
        .token_env
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        names.push(custom.to_owned());
    }
    names.push(TOKEN_VARIABLE.to_owned());
    names.push(WRANGLER_TOKEN_VARIABLE.to_owned());
    let mut seen = Vec::with_capacity(names.len());
    names.retain(|name| {
        if seen.contains(name) {
            false
        } else {
            seen.push(name.clone());
            true
        }
    });
    names
}

/// Where a token meant for `env` is set, outside the keyring: its own variable
/// (`CLOUDFLARE_D1_TOKEN_<ENV>`) in the process environment or in any dotenv file, or any token
/// variable in the env's own `.dev.vars.<env>`. The generic variables elsewhere serve every env
/// and say nothing about this one. Unreadable files are left to [`resolve`] to report.
pub fn tokens_meant_for(
    config_dir: &Path,
    env: &str,
    environment: &dyn Environment,
) -> Vec<TokenSetting> {
    let own = format!("{TOKEN_VARIABLE}_{}", env_suffix(env));
    let mut found = Vec::new();
    if environment
        .var(&own)
        .is_some_and(|value| !value.trim().is_empty())
    {
        found.push(TokenSetting {
            variable: own.clone(),
            file: None,
            line: None,
        });
    }
    for (index, path) in dotenv::file_paths(config_dir, env).into_iter().enumerate() {
        let file = dotenv::DotenvFile::load(path);
        let names: Vec<&str> = if index == 0 {
            vec![own.as_str(), TOKEN_VARIABLE, WRANGLER_TOKEN_VARIABLE]
        } else {
            vec![own.as_str()]
        };
        for name in names {
            if file.get(name).is_some() {
                found.push(TokenSetting {
                    variable: name.to_owned(),
                    line: dotenv::line_of_assignment(&file.path, name),
                    file: Some(file.path.clone()),
                });
            }
        }
    }
    found
}

/// One place [`tokens_meant_for`] found: a variable, in a dotenv file (with its line) or in the
/// process environment (`file` is `None`). Never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSetting {
    pub variable: String,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
}

/// Resolves the token, account id and database id of one environment.
///
/// `store` is the OS keyring (pass `Some(&KeyringStore::new())`), or `None` to skip it. The
/// keyring is asked only when no earlier source holds a token; when it is unavailable (a headless
/// machine), resolution goes on and a missing token reports the reason and a hint.
///
/// Every dotenv file that exists is parsed; a malformed one is an error ([`CredentialError::BadFile`])
/// even when another source would have supplied the values.
pub fn resolve(
    request: &Request<'_>,
    environment: &dyn Environment,
    store: Option<&dyn SecretStore>,
) -> Result<Credentials, CredentialError> {
    resolve::resolve(request, &Flags::default(), environment, store)
}

/// [`resolve`] with command-line values for the account id and the database id, which win over
/// every other source.
pub fn resolve_with_flags(
    request: &Request<'_>,
    flags: &Flags<'_>,
    environment: &dyn Environment,
    store: Option<&dyn SecretStore>,
) -> Result<Credentials, CredentialError> {
    resolve::resolve(request, flags, environment, store)
}

/// For `d1ctl auth status`: every candidate place for each value, in precedence order, marking
/// which one wins and which are set but shadowed, without any value. The keyring is asked even
/// when another source wins. Never fails: unreadable files and an unavailable keyring are
/// reported in the result. Serialize it for `--format json`.
pub fn explain(
    request: &Request<'_>,
    environment: &dyn Environment,
    store: Option<&dyn SecretStore>,
) -> Explanation {
    explain::explain(request, &Flags::default(), environment, store)
}

/// [`explain`] with command-line values, as [`resolve_with_flags`].
pub fn explain_with_flags(
    request: &Request<'_>,
    flags: &Flags<'_>,
    environment: &dyn Environment,
    store: Option<&dyn SecretStore>,
) -> Explanation {
    explain::explain(request, flags, environment, store)
}
