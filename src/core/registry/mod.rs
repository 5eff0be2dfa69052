//! `environments.toml`: the project's migrations folder and its ladder of environments.
//!
//! Parsing is strict: every mistake is reported with the file, line and key, before any database
//! is touched.

use std::ops::Range;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use indexmap::IndexMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::backend::BackendKind;
use crate::core::migrations::Layout;
use crate::d1::client::RequestMode;

mod fleet;
mod step;

pub use fleet::{FleetSpec, MemberName, member_name, parse_file as parse_fleet_file};
pub use step::{StepAction, StepSpec};

/// A mistake found by one of the table readers (`fleet`, `[[step]]`): where (a span of
/// environments.toml), what, and a hint.
struct Mistake {
    span: Option<Range<usize>>,
    message: String,
    hint: String,
}

pub const DEFAULT_CONFIG_FILE: &str = "environments.toml";
pub const DEFAULT_LEDGER: &str = "d1_migrations";
/// `drift` and `plan` use this word for "the migrations folder", so no environment may take it.
pub const RESERVED_NAME: &str = "migrations";

/// A mistake in `environments.toml`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    /// `path:line:column`, or just the path when there is no position.
    pub location: String,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub path: PathBuf,
    /// The folder of `environments.toml`; relative paths in it are resolved against it.
    pub root: PathBuf,
    pub project: Project,
    /// Environments in file order.
    pub environments: Vec<Environment>,
    /// `[[step]]` tables: run-once data steps, in file order.
    pub steps: Vec<StepSpec>,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub migrations_dir: PathBuf,
    /// `None` = detect from the folder.
    pub layout: Option<Layout>,
    /// wrangler's ledger table name.
    pub ledger: String,
    /// Environment names in promotion order.
    pub ladder: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub name: String,
    pub aliases: Vec<String>,
    pub protected: bool,
    pub target: Target,
    /// Shell commands run before a promotion to this env writes anything.
    pub before: Vec<String>,
    /// Shell commands run after a promotion to this env succeeded.
    pub after: Vec<String>,
    /// Where the env's table is in environments.toml: `path:line:column`.
    pub declared_at: String,
}

impl Environment {
    /// Whether the env is served by d1ctl's bundled simulator rather than Cloudflare.
    pub fn is_simulated(&self) -> bool {
        matches!(&self.target, Target::D1(target) if target.simulator)
    }

    /// The databases of a fleet env; `None` for an env of one database.
    pub fn fleet(&self) -> Option<&FleetSpec> {
        match &self.target {
            Target::D1(target) => target.fleet.as_ref(),
            Target::Sqlite(_) => None,
        }
    }

    pub fn kind(&self) -> BackendKind {
        match self.target {
            Target::Sqlite(_) => BackendKind::Sqlite,
            Target::D1(_) => BackendKind::D1,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Target {
    Sqlite(SqliteTarget),
    D1(D1Target),
}

#[derive(Debug, Clone)]
pub struct SqliteTarget {
    pub path: PathBuf,
    /// Set when the file is wrangler's own local state for this database id.
    pub wrangler_database_id: Option<String>,
    /// `d1_rules` (default true): the env's SQL is judged by D1's authorizer rules
    /// (`d1::authorizer`), so it behaves as D1 would. `false` is for projects that are not on
    /// D1 (libSQL, better-sqlite3): any PRAGMA or virtual table SQLite has. Lint's shadow, the
    /// replays of drift and baseline, rehearsal copies and seeding keep D1's rules regardless.
    pub d1_rules: bool,
}

#[derive(Debug, Clone)]
pub struct D1Target {
    /// `None`: resolved from the environment, `.dev.vars` or `.env` (see `credentials`).
    pub account_id: Option<String>,
    pub database_id: Option<String>,
    pub database_name: String,
    pub api_base_url: Option<String>,
    /// Name of an extra environment variable holding this env's API token.
    pub token_env: Option<String>,
    /// Served by d1ctl's bundled D1 simulator (data under `.d1ctl/sim`) instead of Cloudflare.
    pub simulator: bool,
    pub request_mode: RequestMode,
    /// A fleet env names many databases (one per tenant); `database_id` is then `None` and
    /// `database_name` the env's name.
    pub fleet: Option<FleetSpec>,
}

impl Registry {
    /// Reads and validates `path`; `lookup` reads process environment variables for `${VAR}`.
    pub fn load(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = fs_err::read_to_string(path).map_err(|error| ConfigError {
            location: path.display().to_string(),
            message: if error.kind() == std::io::ErrorKind::NotFound {
                "no such file".to_owned()
            } else {
                error.to_string()
            },
            hint: "run d1ctl in the folder that holds environments.toml, or pass `--config PATH`"
                .to_owned(),
        })?;
        Self::parse(path, &text, lookup)
    }

    pub fn parse(
        path: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let parser = Parser {
            path,
            text,
            lookup,
            require_envs: true,
        };
        parser.parse()
    }

    /// [`Registry::parse`] for a file `d1ctl init` is about to fill in: one without any env yet
    /// (an empty file) is accepted, every other mistake is not.
    pub fn parse_before_init(
        path: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let parser = Parser {
            path,
            text,
            lookup,
            require_envs: false,
        };
        parser.parse()
    }

    /// The environment called `name` or having it as an alias.
    pub fn resolve(&self, name: &str) -> Result<&Environment, ConfigError> {
        self.environments
            .iter()
            .find(|env| env.name == name || env.aliases.iter().any(|alias| alias == name))
            .ok_or_else(|| ConfigError {
                location: self.path.display().to_string(),
                message: format!("no environment `{name}`"),
                hint: format!("environments are: {}", self.names_with_aliases()),
            })
    }

    fn names_with_aliases(&self) -> String {
        self.environments
            .iter()
            .map(|env| {
                if env.aliases.is_empty() {
                    format!("`{}`", env.name)
                } else {
                    format!("`{}` ({})", env.name, env.aliases.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The ladder rung before `env`, if `env` is on the ladder and not its first rung.
    pub fn rung_before(&self, env: &str) -> Option<&Environment> {
        let position = self.project.ladder.iter().position(|name| name == env)?;
        let previous = self.project.ladder.get(position.checked_sub(1)?)?;
        self.environments.iter().find(|e| &e.name == previous)
    }

    /// Ladder environments first, in ladder order, then the others in file order.
    pub fn ordered(&self) -> Vec<&Environment> {
        let mut ordered: Vec<&Environment> = self
            .project
            .ladder
            .iter()
            .filter_map(|name| self.environments.iter().find(|env| &env.name == name))
            .collect();
        for env in &self.environments {
            if !self.project.ladder.contains(&env.name) {
                ordered.push(env);
            }
        }
        ordered
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    project: Option<RawProject>,
    #[serde(default)]
    env: IndexMap<Spanned<String>, Spanned<RawEnv>>,
    #[serde(default)]
    step: Vec<Spanned<step::RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    migrations_dir: Option<Spanned<String>>,
    layout: Option<Spanned<String>>,
    ledger: Option<Spanned<String>>,
    ladder: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    backend: Option<Spanned<String>>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    protected: bool,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
    path: Option<Spanned<String>>,
    wrangler_database_id: Option<Spanned<String>>,
    wrangler_dir: Option<Spanned<String>>,
    d1_rules: Option<Spanned<bool>>,
    account_id: Option<Spanned<String>>,
    database_id: Option<Spanned<String>>,
    database_name: Option<Spanned<String>>,
    api_base_url: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    simulator: Option<Spanned<bool>>,
    request_mode: Option<Spanned<String>>,
    fleet: Option<Spanned<fleet::RawFleet>>,
}

const SQLITE_KEYS: &str = "backend, aliases, protected, before, after, path, wrangler_database_id, wrangler_dir, d1_rules";
const D1_KEYS: &str = "backend, aliases, protected, before, after, account_id, database_id, database_name, api_base_url, token_env, simulator, request_mode, fleet";

struct Parser<'a> {
    path: &'a Path,
    text: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Whether a file without any `[env.NAME]` table is a mistake (it is, except for `init`).
    require_envs: bool,
}

impl Parser<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        message: String,
        hint: impl Into<String>,
    ) -> ConfigError {
        let location = match span {
            Some(span) => {
                let (line, column) = line_column(self.text, span.start);
                format!("{}:{line}:{column}", self.path.display())
            }
            None => self.path.display().to_string(),
        };
        ConfigError {
            location,
            message,
            hint: hint.into(),
        }
    }

    fn parse(&self) -> Result<Registry, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text).map_err(|error| {
            let message = error.message().trim().to_owned();
            let hint = if message.starts_with("unknown field") {
                "remove or rename the key; the README's `environments.toml` reference lists every key"
            } else if message.starts_with("missing field") {
                "add the key; the README's `environments.toml` reference lists every key"
            } else {
                "fix the TOML syntax at that position"
            };
            self.error(error.span(), message, hint)
        })?;
        let root = self
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .map_or_else(PathBuf::new, Path::to_path_buf);
        let project = raw.project.unwrap_or(RawProject {
            migrations_dir: None,
            layout: None,
            ledger: None,
            ladder: None,
        });

        let mut environments: Vec<Environment> = Vec::new();
        let mut taken: Vec<(String, Range<usize>)> = Vec::new();
        // Env names as the per-env credential variables spell them (`CLOUDFLARE_D1_TOKEN_<ENV>`):
        // two envs that spell the same there would share one token variable.
        let mut variable_forms: Vec<(String, String, Range<usize>)> = Vec::new();
        for (name, env) in &raw.env {
            let environment = self.environment(&root, name, env)?;
            let form = crate::credentials::env_suffix(name.get_ref());
            if let Some((other, _, first)) =
                variable_forms.iter().find(|(_, taken, _)| *taken == form)
            {
                let (first_line, _) = line_column(self.text, first.start);
                let (line, _) = line_column(self.text, name.span().start);
                return Err(self.error(
                    Some(name.span()),
                    format!(
                        "envs `{other}` (line {first_line}) and `{}` (line {line}) differ only by case or `-`/`_`; both would use the variable `{}_{form}`",
                        name.get_ref(),
                        crate::credentials::TOKEN_VARIABLE
                    ),
                    format!(
                        "rename one of them: env names must stay distinct when upper-cased with `-` read as `_`, so each env has its own credentials (`{}_{form}`)",
                        crate::credentials::TOKEN_VARIABLE
                    ),
                ));
            }
            variable_forms.push((name.get_ref().clone(), form, name.span()));
            for (label, span) in std::iter::once((name.get_ref().clone(), name.span())).chain(
                env.get_ref()
                    .aliases
                    .iter()
                    .map(|a| (a.get_ref().clone(), a.span())),
            ) {
                if label == RESERVED_NAME {
                    return Err(self.error(
                        Some(span),
                        format!("`{RESERVED_NAME}` is reserved and cannot name an environment"),
                        "commands use `migrations` to mean the migrations folder; pick another name",
                    ));
                }
                if let Some((_, first)) = taken.iter().find(|(taken, _)| *taken == label) {
                    let (line, _) = line_column(self.text, first.start);
                    return Err(self.error(
                        Some(span),
                        format!("`{label}` names two environments (first used on line {line})"),
                        "environment names and aliases must be unique",
                    ));
                }
                taken.push((label, span));
            }
            environments.push(environment);
        }

        if environments.is_empty() && self.require_envs {
            return Err(self.error(
                None,
                "no environments: the file has no `[env.NAME]` table".to_owned(),
                "run `d1ctl init` to write them from wrangler's config, or add one, e.g. `[env.local]` with `backend = \"sqlite\"` and `path = \"local.sqlite\"`",
            ));
        }
        let ladder = match &project.ladder {
            Some(ladder) if ladder.get_ref().is_empty() => {
                return Err(self.error(
                    Some(ladder.span()),
                    "`ladder` is empty".to_owned(),
                    format!(
                        "list the environments in promotion order, e.g. `ladder = [{}]`, or leave `ladder` out to use every env in file order",
                        environments
                            .iter()
                            .map(|e| format!("\"{}\"", e.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            Some(ladder) => {
                let mut names: Vec<String> = Vec::new();
                for rung in ladder.get_ref() {
                    let Some(env) = environments.iter().find(|env| {
                        env.name == *rung.get_ref() || env.aliases.contains(rung.get_ref())
                    }) else {
                        return Err(self.error(
                            Some(rung.span()),
                            format!(
                                "`ladder` names `{}`, which is not an environment",
                                rung.get_ref()
                            ),
                            format!(
                                "add an `[env.{}]` table, or use one of: {}",
                                rung.get_ref(),
                                environments
                                    .iter()
                                    .map(|e| format!("`{}`", e.name))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    };
                    if names.contains(&env.name) {
                        return Err(self.error(
                            Some(rung.span()),
                            format!("`ladder` names `{}` twice", env.name),
                            "each environment is one rung of the ladder",
                        ));
                    }
                    names.push(env.name.clone());
                }
                names
            }
            None => environments.iter().map(|env| env.name.clone()).collect(),
        };

        // A fleet is many databases: no single one of them can be what the next rung is
        // promoted from.
        if let Some(position) = ladder.iter().position(|name| {
            environments
                .iter()
                .any(|env| &env.name == name && env.fleet().is_some())
        }) && let Some(next) = ladder.get(position + 1)
        {
            let fleet = &ladder[position];
            return Err(self.error(
                project.ladder.as_ref().map(Spanned::span),
                format!(
                    "`ladder` puts `{next}` after `{fleet}`, a fleet env: a fleet's databases can be the source of nothing"
                ),
                format!("make `{fleet}` the last rung, or leave it off the ladder"),
            ));
        }

        let layout = match &project.layout {
            None => None,
            Some(layout) => match layout.get_ref().as_str() {
                "auto" => None,
                "wrangler" => Some(Layout::Wrangler),
                "drizzle" => Some(Layout::Drizzle),
                other => {
                    return Err(self.error(
                        Some(layout.span()),
                        format!("`layout` is `{other}`"),
                        "use `auto` (the default), `wrangler` or `drizzle`",
                    ));
                }
            },
        };
        let migrations_dir = match &project.migrations_dir {
            Some(dir) => root.join(self.interpolate(dir, "migrations_dir")?),
            None => root.join("migrations"),
        };
        let ledger = match &project.ledger {
            Some(ledger) if ledger.get_ref().trim().is_empty() => {
                return Err(self.error(
                    Some(ledger.span()),
                    "`ledger` is empty".to_owned(),
                    format!("leave it out to use wrangler's default `{DEFAULT_LEDGER}`"),
                ));
            }
            Some(ledger) => ledger.get_ref().clone(),
            None => DEFAULT_LEDGER.to_owned(),
        };
        let mut steps: Vec<StepSpec> = Vec::new();
        let location = |offset: usize| {
            let (line, column) = line_column(self.text, offset);
            format!("{}:{line}:{column}", self.path.display())
        };
        for raw in &raw.step {
            let step = step::parse(raw, &root, &steps, &location)
                .map_err(|mistake| self.error(mistake.span, mistake.message, mistake.hint))?;
            steps.push(step);
        }
        Ok(Registry {
            path: self.path.to_path_buf(),
            steps,
            root,
            project: Project {
                migrations_dir,
                layout,
                ledger,
                ladder,
            },
            environments,
        })
    }

    fn environment(
        &self,
        root: &Path,
        name: &Spanned<String>,
        env: &Spanned<RawEnv>,
    ) -> Result<Environment, ConfigError> {
        let raw = env.get_ref();
        let env_name = name.get_ref();
        if !is_valid_name(env_name) {
            return Err(self.error(
                Some(name.span()),
                format!("`{env_name}` is not a valid environment name"),
                "use letters, digits, `-` and `_`, starting with a letter or digit",
            ));
        }
        for alias in &raw.aliases {
            if !is_valid_name(alias.get_ref()) {
                return Err(self.error(
                    Some(alias.span()),
                    format!(
                        "env `{env_name}`: alias `{}` is not a valid name",
                        alias.get_ref()
                    ),
                    "use letters, digits, `-` and `_`, starting with a letter or digit",
                ));
            }
        }
        let Some(backend) = &raw.backend else {
            return Err(self.error(
                Some(name.span()),
                format!("env `{env_name}`: missing key `backend`"),
                "add `backend = \"sqlite\"` (a local file) or `backend = \"d1\"` (Cloudflare D1)",
            ));
        };
        let reject = |keys: &[(&str, bool, Option<Range<usize>>)], valid: &str| {
            for (key, present, span) in keys {
                if *present {
                    return Err(self.error(
                        span.clone(),
                        format!(
                            "env `{env_name}`: key `{key}` does not apply to backend `{}`",
                            backend.get_ref()
                        ),
                        format!("the keys of a `{}` env are: {valid}", backend.get_ref()),
                    ));
                }
            }
            Ok(())
        };
        let span_of = |field: &Option<Spanned<String>>| field.as_ref().map(Spanned::span);
        let target = match backend.get_ref().as_str() {
            "sqlite" => {
                reject(
                    &[
                        (
                            "account_id",
                            raw.account_id.is_some(),
                            span_of(&raw.account_id),
                        ),
                        (
                            "database_id",
                            raw.database_id.is_some(),
                            span_of(&raw.database_id),
                        ),
                        (
                            "database_name",
                            raw.database_name.is_some(),
                            span_of(&raw.database_name),
                        ),
                        (
                            "api_base_url",
                            raw.api_base_url.is_some(),
                            span_of(&raw.api_base_url),
                        ),
                        (
                            "token_env",
                            raw.token_env.is_some(),
                            span_of(&raw.token_env),
                        ),
                        (
                            "simulator",
                            raw.simulator.is_some(),
                            raw.simulator.as_ref().map(Spanned::span),
                        ),
                        (
                            "request_mode",
                            raw.request_mode.is_some(),
                            span_of(&raw.request_mode),
                        ),
                        (
                            "fleet",
                            raw.fleet.is_some(),
                            raw.fleet.as_ref().map(Spanned::span),
                        ),
                    ],
                    SQLITE_KEYS,
                )?;
                Target::Sqlite(self.sqlite_target(root, env_name, name, raw)?)
            }
            "d1" => {
                reject(
                    &[
                        ("path", raw.path.is_some(), span_of(&raw.path)),
                        (
                            "wrangler_database_id",
                            raw.wrangler_database_id.is_some(),
                            span_of(&raw.wrangler_database_id),
                        ),
                        (
                            "wrangler_dir",
                            raw.wrangler_dir.is_some(),
                            span_of(&raw.wrangler_dir),
                        ),
                        (
                            "d1_rules",
                            raw.d1_rules.is_some(),
                            raw.d1_rules.as_ref().map(Spanned::span),
                        ),
                    ],
                    D1_KEYS,
                )?;
                let optional = |field: &Option<Spanned<String>>, key: &str| match field {
                    Some(value) => {
                        let value = self.interpolate(value, key)?;
                        if value.trim().is_empty() {
                            Err(self.error(
                                span_of(field),
                                format!("env `{env_name}`: `{key}` is empty"),
                                format!("set `{key}` to the value shown by `wrangler d1 list` or the dashboard"),
                            ))
                        } else {
                            Ok(Some(value))
                        }
                    }
                    None => Ok(None),
                };
                let account_id = optional(&raw.account_id, "account_id")?;
                let fleet = match &raw.fleet {
                    Some(table) => {
                        for (key, span) in [
                            ("database_id", span_of(&raw.database_id)),
                            ("database_name", span_of(&raw.database_name)),
                        ] {
                            if let Some(span) = span {
                                return Err(self.error(
                                    Some(span),
                                    format!("env `{env_name}`: `{key}` and `fleet` together: a fleet env names its databases in `fleet`"),
                                    format!("delete `{key}`, or delete `fleet` to make `{env_name}` one database"),
                                ));
                            }
                        }
                        Some(fleet::parse(env_name, table, root).map_err(|mistake| {
                            self.error(mistake.span, mistake.message, &mistake.hint)
                        })?)
                    }
                    None => None,
                };
                let database_id = optional(&raw.database_id, "database_id")?;
                let database_name = if fleet.is_some() {
                    Some(env_name.clone())
                } else {
                    optional(&raw.database_name, "database_name")?
                };
                let Some(database_name) = database_name else {
                    return Err(self.error(
                        Some(name.span()),
                        format!("env `{env_name}`: missing key `database_name`"),
                        "add `database_name`: d1ctl shows it on every write and checks it against the database id",
                    ));
                };
                let request_mode = match raw.request_mode.as_ref() {
                    None => RequestMode::Batch,
                    Some(mode) => match mode.get_ref().as_str() {
                        "batch" => RequestMode::Batch,
                        "sql" => RequestMode::Sql,
                        other => {
                            return Err(self.error(
                                Some(mode.span()),
                                format!("env `{env_name}`: `request_mode` is `{other}`"),
                                "use `batch` (the default: statements as entries of one batch) or `sql` (one multi-statement sql)",
                            ));
                        }
                    },
                };
                let api_base_url = raw
                    .api_base_url
                    .as_ref()
                    .map(|url| self.interpolate(url, "api_base_url"))
                    .transpose()?;
                if let (Some(url), Some(span)) = (&api_base_url, span_of(&raw.api_base_url))
                    && !(url.starts_with("https://") || url.starts_with("http://"))
                {
                    return Err(self.error(
                        Some(span),
                        format!("env `{env_name}`: `api_base_url` `{url}` is not an http(s) URL"),
                        "use the full base URL, e.g. `https://api.cloudflare.com/client/v4`",
                    ));
                }
                let simulator = raw.simulator.as_ref().is_some_and(|s| *s.get_ref());
                // The simulator runs in process with its own token: a URL or a token variable
                // says the env is meant for a real API, which `simulator = true` would silently
                // bypass.
                for (key, span) in [
                    ("api_base_url", span_of(&raw.api_base_url)),
                    ("token_env", span_of(&raw.token_env)),
                ] {
                    if let (true, Some(span)) = (simulator, span) {
                        return Err(self.error(
                            Some(span),
                            format!(
                                "env `{env_name}`: `simulator = true` and `{key}` together: the bundled simulator needs no {}",
                                if key == "token_env" { "token" } else { "URL" }
                            ),
                            format!(
                                "to reach Cloudflare (or your own `d1ctl sim`), delete `simulator = true`; to stay on the bundled simulator, delete `{key}`"
                            ),
                        ));
                    }
                }
                Target::D1(D1Target {
                    account_id,
                    database_id,
                    database_name,
                    api_base_url,
                    token_env: raw.token_env.as_ref().map(|v| v.get_ref().clone()),
                    simulator,
                    request_mode,
                    fleet,
                })
            }
            other => {
                return Err(self.error(
                    Some(backend.span()),
                    format!("env `{env_name}`: unknown backend `{other}`"),
                    "use `sqlite` (a local file) or `d1` (Cloudflare D1)",
                ));
            }
        };
        Ok(Environment {
            name: env_name.clone(),
            aliases: raw.aliases.iter().map(|a| a.get_ref().clone()).collect(),
            protected: raw.protected,
            target,
            before: raw.before.clone(),
            after: raw.after.clone(),
            declared_at: self.error(Some(name.span()), String::new(), "").location,
        })
    }

    fn sqlite_target(
        &self,
        root: &Path,
        env_name: &str,
        name: &Spanned<String>,
        raw: &RawEnv,
    ) -> Result<SqliteTarget, ConfigError> {
        let d1_rules = raw.d1_rules.as_ref().is_none_or(|rules| *rules.get_ref());
        match (&raw.path, &raw.wrangler_database_id) {
            (Some(path), None) => {
                if let Some(dir) = &raw.wrangler_dir {
                    return Err(self.error(
                        Some(dir.span()),
                        format!("env `{env_name}`: `wrangler_dir` goes with `wrangler_database_id`, not `path`"),
                        "remove `wrangler_dir`, or replace `path` with `wrangler_database_id`",
                    ));
                }
                Ok(SqliteTarget {
                    path: root.join(self.interpolate(path, "path")?),
                    wrangler_database_id: None,
                    d1_rules,
                })
            }
            (None, Some(id)) => {
                let id = self.interpolate(id, "wrangler_database_id")?;
                let dir = match &raw.wrangler_dir {
                    Some(dir) => join_normal(root, &self.interpolate(dir, "wrangler_dir")?),
                    None => root.to_path_buf(),
                };
                Ok(SqliteTarget {
                    path: wrangler_local_path(&dir, &id),
                    wrangler_database_id: Some(id),
                    d1_rules,
                })
            }
            (Some(path), Some(_)) => Err(self.error(
                Some(path.span()),
                format!("env `{env_name}`: both `path` and `wrangler_database_id` are set"),
                "keep `path` for a file of your own, or `wrangler_database_id` for wrangler's local state, not both",
            )),
            (None, None) => Err(self.error(
                Some(name.span()),
                format!("env `{env_name}`: an `sqlite` env needs `path` or `wrangler_database_id`"),
                "add `path = \".d1ctl/local.sqlite\"`, or `wrangler_database_id = \"<database_id from wrangler.toml>\"`",
            )),
        }
    }

    /// Replaces `${VAR}` with the process environment's value; a missing variable is an error.
    fn interpolate(&self, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let text = value.get_ref();
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(self.error(
                    Some(value.span()),
                    format!("`{key}`: `${{` without a closing `}}`"),
                    "write `${NAME}` to read the environment variable NAME",
                ));
            };
            let variable = &after[..end];
            let Some(resolved) = (self.lookup)(variable) else {
                return Err(self.error(
                    Some(value.span()),
                    format!("`{key}` reads `${{{variable}}}`, which is not set"),
                    format!("export {variable}=…, or write the value into environments.toml"),
                ));
            };
            out.push_str(&resolved);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// `root` joined with `relative`, without `.` components (so `.` adds nothing to a path shown
/// to the user).
fn join_normal(root: &Path, relative: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    for component in Path::new(relative).components() {
        if component != std::path::Component::CurDir {
            path.push(component);
        }
    }
    path
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// wrangler's local file for a database: the Durable Object id miniflare derives from `name`
/// (`preview_database_id ?? database_id ?? binding`).
pub fn wrangler_local_file_name(name: &str) -> String {
    let key = Sha256::digest(b"miniflare-D1DatabaseObject");
    let mac = |data: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes()
    };
    let first = mac(name.as_bytes());
    let second = mac(&first[..16]);
    format!(
        "{}{}.sqlite",
        hex::encode(&first[..16]),
        hex::encode(&second[..16])
    )
}

/// `<dir>/.wrangler/state/v3/d1/miniflare-D1DatabaseObject/<hex>.sqlite`.
pub fn wrangler_local_path(wrangler_dir: &Path, name: &str) -> PathBuf {
    wrangler_dir
        .join(".wrangler/state/v3/d1/miniflare-D1DatabaseObject")
        .join(wrangler_local_file_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_wrangler_local_file_names() {
        for (name, expected) in [
            (
                "6f1c2a3e-1b2c-4d5e-8f90-0123456789ab",
                "d4d861e5d14433f7f2d1c01d1030318502c8c056bd682e75b3d16b47dad2ab73",
            ),
            (
                "11111111-1111-4111-8111-111111111111",
                "1d86945724128759ebd10400e22d0254fbaa8faa130296b866e732c3fac26237",
            ),
            (
                "33333333-3333-4333-8333-333333333333",
                "9ec83b7cc49efb3e8df8c5ebd15c3ddcdbf52a2274ec1a2d1f16345944834470",
            ),
            (
                "DB",
                "e7352547963de7050bd7d94658afc4fe78b61811b7815da12d90be8e863abf4d",
            ),
        ] {
            assert_eq!(wrangler_local_file_name(name), format!("{expected}.sqlite"));
        }
    }

    fn parse(text: &str) -> Result<Registry, ConfigError> {
        Registry::parse(Path::new("environments.toml"), text, &|name| {
            (name == "ACCOUNT").then(|| "abc123".to_owned())
        })
    }

    #[test]
    fn parses_a_ladder_with_aliases_and_interpolation() {
        let registry = parse(
            "[project]\nladder = [\"local\", \"prod\"]\n\n[env.local]\nbackend = \"sqlite\"\npath = \"db.sqlite\"\n\n[env.production]\nbackend = \"d1\"\naliases = [\"prod\"]\nprotected = true\naccount_id = \"${ACCOUNT}\"\ndatabase_id = \"x\"\ndatabase_name = \"app\"\n",
        )
        .unwrap();
        assert_eq!(registry.project.ladder, ["local", "production"]);
        let prod = registry.resolve("prod").unwrap();
        assert!(prod.protected);
        let Target::D1(d1) = &prod.target else {
            panic!("d1 expected")
        };
        assert_eq!(d1.account_id.as_deref(), Some("abc123"));
        assert_eq!(registry.rung_before("production").unwrap().name, "local");
    }

    #[test]
    fn reports_line_and_key_of_mistakes() {
        let error = parse("[env.local]\nbackend = \"sqlite\"\npth = \"x\"\n").unwrap_err();
        assert_eq!(error.location, "environments.toml:3:1");
        assert!(
            error.message.contains("unknown field `pth`"),
            "{}",
            error.message
        );

        let error = parse(
            "[env.local]\nbackend = \"sqlite\"\npath = \"a\"\nwrangler_database_id = \"b\"\n",
        )
        .unwrap_err();
        assert_eq!(error.location, "environments.toml:3:8");

        let error = parse("[env.x]\nbackend = \"d1\"\naccount_id = \"${NOPE}\"\ndatabase_id = \"1\"\ndatabase_name = \"n\"\n").unwrap_err();
        assert!(error.message.contains("${NOPE}"), "{}", error.message);
        assert_eq!(error.location, "environments.toml:3:14");
    }

    #[test]
    fn fleet_envs_name_their_databases_one_way_and_come_last() {
        let registry = parse(
            "[env.local]\nbackend = \"sqlite\"\npath = \"l\"\n\n[env.tenants]\nbackend = \"d1\"\nfleet.name_prefix = \"tenant-\"\n",
        )
        .unwrap();
        let tenants = registry.resolve("tenants").unwrap();
        assert_eq!(
            tenants.fleet(),
            Some(&FleetSpec::Prefix("tenant-".to_owned()))
        );

        let error = parse(
            "[env.tenants]\nbackend = \"d1\"\nfleet.name_prefix = \"t-\"\nfleet.file = \"f\"\n",
        )
        .unwrap_err();
        assert!(error.message.contains("exactly one"), "{}", error.message);

        let error = parse(
            "[env.tenants]\nbackend = \"d1\"\ndatabase_name = \"x\"\nfleet.databases = [\"a\"]\n",
        )
        .unwrap_err();
        assert_eq!(error.location, "environments.toml:3:17");
        assert!(
            error.message.contains("`database_name` and `fleet`"),
            "{}",
            error.message
        );

        let error =
            parse("[env.tenants]\nbackend = \"d1\"\nfleet.databases = [\"ok\", \"not ok\"]\n")
                .unwrap_err();
        assert!(error.message.contains("`not ok`"), "{}", error.message);

        let error =
            parse("[env.local]\nbackend = \"sqlite\"\npath = \"l\"\nfleet.name_prefix = \"t-\"\n")
                .unwrap_err();
        assert!(
            error.message.contains("`fleet` does not apply"),
            "{}",
            error.message
        );

        let error = parse(
            "[project]\nladder = [\"tenants\", \"local\"]\n\n[env.local]\nbackend = \"sqlite\"\npath = \"l\"\n\n[env.tenants]\nbackend = \"d1\"\nfleet.name_prefix = \"t-\"\n",
        )
        .unwrap_err();
        assert!(
            error.message.contains("source of nothing"),
            "{}",
            error.message
        );
        assert!(error.hint.contains("last rung"), "{}", error.hint);
    }
}
