//! One file per subcommand; this module dispatches and holds what they share.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::Context as _;

use crate::backend::{Backend, BackendError, BackendKind};
use crate::cli::printer::{Printer, Style};
use crate::cli::reporter::RehearsalProgress;
use crate::cli::{Cli, Command};
use crate::core::export::{ExportError, SchemaObject, Source, SourceKind};
use crate::core::migrations::{self, MigrationError, MigrationSet};
use crate::core::promote::{View, read_view};
use crate::core::registry::{ConfigError, D1Target, Environment, Registry, Target};
use crate::core::rehearse::{Rehearsal, RehearsalError};
use crate::credentials::{self, CredentialError, KeyringStore, ProcessEnvironment, Secret};
use crate::d1::client::{D1Backend, D1Client, D1Config, D1Error, DEFAULT_BASE_URL};
use crate::local::SqliteBackend;
use crate::sim::{SimConfig, Simulator};

mod apply;
mod auth;
mod baseline;
mod checklist;
mod drift;
mod export;
mod init;
mod lint;
mod lock;
mod new;
mod promote;
mod pull;
mod rehearse;
mod rollback;
mod sim;
mod status;

/// How a command ended; mapped to the process exit code by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done, nothing to do, or nothing found.
    Success,
    /// 1: the command ran and found something the user must act on.
    Failure,
    /// 2: usage, configuration, credential, network or internal error.
    Error,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
        })
    }
}

/// A mistake of the user's that is not a config or migration file error: the message and a hint.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct UserError {
    pub(crate) message: String,
    pub(crate) hint: String,
}

impl UserError {
    pub(crate) fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// What every command gets: the printer and the resolved global settings.
pub(crate) struct Context {
    pub(crate) printer: Printer,
    pub(crate) config: PathBuf,
    /// The bundled simulator, started on first use by an env with `simulator = true`.
    simulator: OnceLock<Simulator>,
    /// One HTTP client for every D1 env of the command.
    http: OnceLock<reqwest::Client>,
    /// `--yes` (global, or the command's own): confirms without asking.
    yes: bool,
    /// Whether the protected-simulator warning was shown (once per command).
    warned_simulated: AtomicBool,
    /// Protected envs whose redirected API the user confirmed in this command.
    redirects_confirmed: Mutex<Vec<String>>,
}

/// The variable wrangler honours for its API base URL.
const BASE_URL_VARIABLE: &str = "CLOUDFLARE_API_BASE_URL";

/// The token d1ctl and its in-process simulator share; it guards nothing real.
const SIMULATOR_TOKEN: &str = "d1ctl-simulator";
/// The account id simulator envs use when environments.toml gives none.
const SIMULATOR_ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

impl Context {
    /// Loads environments.toml, refuses a simulated env that holds a token meant for it, and
    /// warns (once per command) about protected envs that run on the simulator.
    pub(crate) fn registry(&self) -> anyhow::Result<Registry> {
        let registry = Registry::load(&self.config, &|name| std::env::var(name).ok())?;
        for env in registry
            .environments
            .iter()
            .filter(|env| env.is_simulated())
        {
            let found =
                credentials::tokens_meant_for(&registry.root, &env.name, &ProcessEnvironment);
            if let Some(setting) = found.first() {
                return Err(simulated_with_token(env, setting).into());
            }
        }
        if !self.warned_simulated.swap(true, Ordering::Relaxed) {
            for env in registry
                .environments
                .iter()
                .filter(|env| env.protected && env.is_simulated())
            {
                self.printer.warning(&format!(
                    "`{}` is protected but runs on d1ctl's bundled simulator (`simulator = true`, {}): nothing done to it reaches Cloudflare; its data is under `.d1ctl/sim`",
                    env.name,
                    display_path(Path::new(&env.declared_at))
                ));
            }
        }
        Ok(registry)
    }

    /// Where `CLOUDFLARE_API_BASE_URL` sends a D1 env's requests instead of Cloudflare: only an
    /// env that names no `api_base_url` of its own (and is not on the simulator) follows it.
    pub(crate) fn redirect_of(env: &Environment) -> Option<String> {
        match &env.target {
            Target::D1(target) if !target.simulator && target.api_base_url.is_none() => {
                std::env::var(BASE_URL_VARIABLE)
                    .ok()
                    .filter(|url| !url.is_empty())
            }
            _ => None,
        }
    }

    /// A protected env's token goes where `CLOUDFLARE_API_BASE_URL` points only once the user
    /// confirms it, reads included: a stray exported variable would otherwise hand production's
    /// token to any server. Checked here, where every command gets its D1 client, so no command
    /// can send the token without it; `--yes` is global so that reads (`status`, `drift`,
    /// `export`, `plan`, …) can confirm the same way writes do.
    fn confirm_redirect(&self, env: &Environment, url: &str) -> anyhow::Result<()> {
        use std::io::{BufRead as _, IsTerminal as _, Write as _};
        let mut confirmed = self
            .redirects_confirmed
            .lock()
            .map_err(|_| anyhow::anyhow!("a confirmation prompt panicked"))?;
        if confirmed.contains(&env.name) {
            return Ok(());
        }
        let what = format!(
            "`{}` is protected and `{BASE_URL_VARIABLE}` redirects its API to {url}",
            env.name
        );
        if self.yes {
            self.printer.message(&format!(
                "{what}; sending its token there, confirmed by `--yes`"
            ));
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            let mut stderr = std::io::stderr().lock();
            write!(stderr, "{what}. Type its name to send its token there: ")?;
            stderr.flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if answer.trim() != env.name {
                return Err(UserError::new(
                    format!("not confirmed; nothing was sent to {url}"),
                    redirect_hint(),
                )
                .into());
            }
        } else {
            return Err(UserError::new(
                format!("{what}; nothing was sent for it"),
                redirect_hint(),
            )
            .into());
        }
        confirmed.push(env.name.clone());
        Ok(())
    }

    /// The project's migration set; its warnings are shown once here.
    pub(crate) fn migrations(&self, registry: &Registry) -> anyhow::Result<MigrationSet> {
        let set = migrations::load(&registry.project.migrations_dir, registry.project.layout)?;
        for warning in &set.warnings {
            self.printer.warning(warning);
        }
        self.printer.detail(&format!(
            "{} {} migrations in `{}`",
            set.migrations.len(),
            set.layout,
            display_path(&set.dir)
        ));
        Ok(set)
    }

    pub(crate) fn backend(
        &self,
        registry: &Registry,
        env: &Environment,
    ) -> anyhow::Result<Box<dyn Backend>> {
        match &env.target {
            Target::Sqlite(target) => Ok(Box::new(SqliteBackend::new(&target.path))),
            Target::D1(_) => Ok(Box::new(self.d1_backend(registry, env)?)),
        }
    }

    /// The D1 client of a `d1` env: the bundled simulator's, or Cloudflare's with the env's
    /// credentials.
    pub(crate) fn d1_backend(
        &self,
        registry: &Registry,
        env: &Environment,
    ) -> anyhow::Result<D1Backend> {
        let Target::D1(target) = &env.target else {
            return Err(UserError::new(
                format!(
                    "env `{}` is a local SQLite file, not a D1 database",
                    env.name
                ),
                "this needs a `backend = \"d1\"` environment",
            )
            .into());
        };
        let config = if target.simulator {
            let simulator = self.simulator(registry)?;
            D1Config {
                base_url: simulator.base_url(),
                account_id: target
                    .account_id
                    .clone()
                    .unwrap_or_else(|| SIMULATOR_ACCOUNT.to_owned()),
                database_id: simulator_database_id(env, target)?,
                database_name: target.database_name.clone(),
                token: Secret::new(SIMULATOR_TOKEN.to_owned()),
                mode: target.request_mode,
            }
        } else {
            // An env's own `api_base_url` wins; the variable (the one wrangler honours, so one
            // setting points both at a simulator) only fills in for envs that name none.
            let redirect = Self::redirect_of(env);
            if let (Some(url), true) = (&redirect, env.protected) {
                self.confirm_redirect(env, url)?;
            }
            let request = credential_request(registry, env, target);
            let keyring = KeyringStore::new();
            // The keyring answers over D-Bus, which blocks.
            let resolved = tokio::task::block_in_place(|| {
                credentials::resolve(&request, &ProcessEnvironment, Some(&keyring))
            })
            .with_context(|| format!("no credentials for env `{}`", env.name))?;
            self.printer.detail(&format!(
                "env `{}`: token from {}, account id from {}, database id from {}",
                env.name,
                resolved.token.source,
                resolved.account_id.source,
                resolved.database_id.source
            ));
            let base_url = target
                .api_base_url
                .clone()
                .or(redirect)
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
            D1Config {
                base_url,
                account_id: resolved.account_id.value,
                database_id: resolved.database_id.value,
                database_name: target.database_name.clone(),
                token: resolved.token.value,
                mode: target.request_mode,
            }
        };
        let http = if let Some(http) = self.http.get() {
            http.clone()
        } else {
            let http =
                crate::d1::client::http_client().context("could not set up the HTTP client")?;
            self.http.get_or_init(|| http).clone()
        };
        Ok(D1Backend::new(D1Client::with_http(config, http)?))
    }

    /// The in-process simulator serving every `simulator = true` env, its data under
    /// `.d1ctl/sim` beside environments.toml.
    fn simulator(&self, registry: &Registry) -> anyhow::Result<&Simulator> {
        if let Some(simulator) = self.simulator.get() {
            return Ok(simulator);
        }
        let mut databases = Vec::new();
        for env in &registry.environments {
            if let Target::D1(target) = &env.target
                && target.simulator
            {
                databases.push((
                    target.database_name.clone(),
                    simulator_database_id(env, target)?,
                ));
            }
        }
        let data_dir = registry.root.join(".d1ctl").join("sim");
        let simulator = Simulator::start(SimConfig {
            data_dir: Some(data_dir.clone()),
            tokens: vec![SIMULATOR_TOKEN.to_owned()],
            databases,
        })
        .with_context(|| {
            format!(
                "could not start the bundled D1 simulator in `{}`",
                display_path(&data_dir)
            )
        })?;
        self.printer
            .detail(&format!("bundled D1 simulator at {}", simulator.base_url()));
        Ok(self.simulator.get_or_init(|| simulator))
    }

    /// Ends the command: an in-process simulator needs no graceful shutdown, since every
    /// request it served was committed before it answered.
    fn finish(mut self) {
        if let Some(simulator) = self.simulator.take() {
            std::mem::forget(simulator);
        }
    }

    /// Opens an env's database and confirms it is the configured one; `announce` prints the
    /// target line every writing command starts with.
    pub(crate) async fn open_target(
        &self,
        registry: &Registry,
        env: &Environment,
        announce: bool,
    ) -> anyhow::Result<(Box<dyn Backend>, crate::backend::Identity)> {
        let backend = self.backend(registry, env)?;
        let identity = backend
            .describe()
            .await
            .with_context(|| format!("could not confirm the database of env `{}`", env.name))?;
        if announce {
            self.printer
                .message(&self.target_line(env, backend.kind(), &identity.label));
        }
        Ok((backend, identity))
    }

    /// Opens `env` and reads both sides of its rung, then plans it: what `plan`, `promote`,
    /// `rehearse` and `checklist` all start from.
    pub(crate) async fn read_rung(
        &self,
        registry: &Registry,
        set: &MigrationSet,
        ledgers: &crate::core::ledger::Ledgers,
        env: &Environment,
        announce: bool,
    ) -> anyhow::Result<Rung> {
        let (backend, identity) = self.open_target(registry, env, announce).await?;
        let source = self.read_source(registry, set, ledgers, env).await?;
        let target = read_view(
            ledgers,
            set,
            backend.as_ref(),
            &env.name,
            identity.known_empty,
        )
        .await?;
        let plan = crate::core::promote::plan(
            set,
            &source,
            &target,
            backend.kind(),
            &ledgers.ignored_tables(),
            None,
        );
        Ok(Rung {
            backend,
            identity,
            source,
            target,
            plan,
        })
    }

    /// The source of `env` as a promotion side: the rung below it (one request), or the
    /// migrations folder for the first rung.
    pub(crate) async fn read_source(
        &self,
        registry: &Registry,
        set: &MigrationSet,
        ledgers: &crate::core::ledger::Ledgers,
        env: &Environment,
    ) -> anyhow::Result<View> {
        match registry.rung_before(&env.name) {
            Some(below) => {
                let backend = self.backend(registry, below)?;
                Ok(read_view(ledgers, set, backend.as_ref(), &below.name, false).await?)
            }
            None => Ok(View::folder(set)),
        }
    }

    /// Rehearses `plan`'s pending migrations on a copy of `env` (already opened and read as
    /// `target`) and records the result; reads and (for D1) an export are all it asks of `env`.
    #[expect(
        clippy::too_many_arguments,
        reason = "what a rehearsal needs of the promotion just planned"
    )]
    pub(crate) async fn rehearse(
        &self,
        registry: &Registry,
        set: &MigrationSet,
        env: &Environment,
        identity: &crate::backend::Identity,
        target: &View,
        plan: &crate::core::promote::Plan,
        all_in_one: bool,
    ) -> anyhow::Result<Rehearsal> {
        let kind = match &env.target {
            Target::Sqlite(sqlite) => SourceKind::Sqlite(sqlite.path.clone()),
            Target::D1(_) => SourceKind::D1(self.d1_backend(registry, env)?),
        };
        let source = Source {
            env,
            kind,
            label: identity.label.clone(),
        };
        let ledgers = crate::core::ledger::Ledgers::new(&registry.project.ledger, set.layout);
        let ignore = ledgers.ignored_tables();
        let objects = SchemaObject::from_snapshot(&target.snapshot);
        let pending = plan.migrations(set);
        let tmp_dir = crate::core::temp::tmp_dir(registry)
            .context("could not create `.d1ctl/tmp` for the copy")?;
        let request = crate::core::rehearse::Request {
            source: &source,
            objects: &objects,
            size_bytes: identity.size_bytes,
            known_empty: identity.known_empty,
            rung_below: &plan.source,
            pending: &pending,
            all_in_one,
            ignore: &ignore,
            tmp_dir: &tmp_dir,
        };
        let progress = RehearsalProgress::new(&self.printer);
        let rehearsal = crate::core::rehearse::rehearse(&request, &progress)
            .await
            .with_context(|| format!("could not rehearse on a copy of `{}`", env.name))?;
        let path = crate::core::rehearse::record::save(&registry.root, &rehearsal)?;
        self.printer
            .message(&format!("recorded in `{}`", display_path(&path)));
        Ok(rehearsal)
    }

    /// Opens an env for dumping: a local file that must exist, or a D1 database confirmed with
    /// Cloudflare (one request).
    pub(crate) async fn open_source<'a>(
        &self,
        registry: &Registry,
        env: &'a Environment,
    ) -> anyhow::Result<Source<'a>> {
        match &env.target {
            Target::Sqlite(target) => {
                if !target.path.is_file() {
                    return Err(UserError::new(
                        format!(
                            "env `{}` has no database yet: `{}` does not exist",
                            env.name,
                            display_path(&target.path)
                        ),
                        format!(
                            "create it with `d1ctl apply {}`, or check its `path` in environments.toml",
                            env.name
                        ),
                    )
                    .into());
                }
                Ok(Source {
                    env,
                    kind: SourceKind::Sqlite(target.path.clone()),
                    label: display_path(&target.path),
                })
            }
            Target::D1(_) => {
                let backend = self.d1_backend(registry, env)?;
                let identity = backend.describe().await.with_context(|| {
                    format!("could not confirm the database of env `{}`", env.name)
                })?;
                Ok(Source {
                    env,
                    kind: SourceKind::D1(backend),
                    label: identity.label,
                })
            }
        }
    }

    /// Prints what an apply did: recovered (lost response, committed) and applied migrations.
    pub(crate) fn report_applied(
        &self,
        outcome: &crate::core::write::migrate::Migrated,
        env: &str,
    ) {
        if !outcome.adopted.is_empty() {
            self.printer.detail(&format!(
                "recorded {} already applied by another tool in the ledgers that lacked them",
                plural(outcome.adopted.len(), "migration")
            ));
        }
        for name in &outcome.recovered {
            self.printer.warning(&format!(
                "the response for `{name}` was lost; `{env}`'s ledger shows it committed, so it is applied"
            ));
        }
        for applied in &outcome.applied {
            self.printer.message(&format!(
                "{} {} ({}, {} ms)",
                self.printer.paint(Style::Green, "applied"),
                applied.name,
                plural(applied.statements, "statement"),
                applied.duration_ms
            ));
        }
    }

    /// The one line every command that writes prints first: which database it is, whether it
    /// is the bundled simulator, and where `CLOUDFLARE_API_BASE_URL` sends it.
    pub(crate) fn target_line(
        &self,
        env: &Environment,
        kind: BackendKind,
        identity: &str,
    ) -> String {
        format!(
            "{} {}{} ({kind}, {identity}{}{})",
            self.printer.paint(Style::Bold, "target:"),
            self.printer.paint(Style::Cyan, &env.name),
            simulator_mark(env),
            if env.protected { ", protected" } else { "" },
            Self::redirect_of(env)
                .map(|url| format!(", API redirected by {BASE_URL_VARIABLE} to {url}"))
                .unwrap_or_default()
        )
    }
}

/// A rung as read before anything is written: its target, both sides, and the plan.
pub(crate) struct Rung {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) identity: crate::backend::Identity,
    pub(crate) source: View,
    pub(crate) target: View,
    pub(crate) plan: crate::core::promote::Plan,
}

/// ` (simulator)` after the name of an env served by the bundled simulator, so its output is
/// never mistaken for Cloudflare D1's; empty otherwise.
pub(crate) fn simulator_mark(env: &Environment) -> &'static str {
    if env.is_simulated() {
        " (simulator)"
    } else {
        ""
    }
}

fn redirect_hint() -> String {
    format!(
        "pass `--yes` to send it there anyway; unset `{BASE_URL_VARIABLE}` to reach Cloudflare, or give the env its own `api_base_url` in environments.toml"
    )
}

/// A simulated env with a token meant for it: the env was surely meant to reach Cloudflare.
fn simulated_with_token(env: &Environment, setting: &credentials::TokenSetting) -> ConfigError {
    let (location, place) = match &setting.file {
        Some(file) => (
            match setting.line {
                Some(line) => format!("{}:{line}", display_path(file)),
                None => display_path(file),
            },
            format!("`{}` sets `{}`", display_path(file), setting.variable),
        ),
        None => (
            display_path(Path::new(&env.declared_at)),
            format!("the environment variable `{}` is set", setting.variable),
        ),
    };
    ConfigError {
        location,
        message: format!(
            "env `{}` runs on the bundled simulator (`simulator = true`, {}) but {place}, a token meant for it",
            env.name,
            display_path(Path::new(&env.declared_at))
        ),
        hint: format!(
            "a token means `{}` is meant for Cloudflare: delete `simulator = true` from `[env.{}]` to reach it, or remove the token to stay on the simulator",
            env.name, env.name
        ),
    }
}

/// Who applies: recorded in d1ctl's ledger.
pub(crate) fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{user}@{host}")
}

/// Prints why a write session stopped before writing: a held lock is the user's to act on
/// (exit 1); anything else is an error (exit 2).
pub(crate) fn write_error(
    context: &Context,
    error: crate::core::write::WriteError,
    env: &str,
) -> anyhow::Result<ExitStatus> {
    use crate::core::write::WriteError;
    if let WriteError::Locked(held) = &error {
        context.printer.error(
            &format!("{held}; nothing was written"),
            error.hint().as_deref(),
        );
        return Ok(ExitStatus::Failure);
    }
    Err(anyhow::Error::from(error).context(format!("the write to `{env}` stopped")))
}

/// Prints a migration session's failure: what failed, then what the target holds as read
/// back from it after the failure (never assumed), the hint, and the rollback command when
/// anything may have been written.
pub(crate) fn write_failure(
    context: &Context,
    env: &str,
    failure: &crate::core::write::Failure<crate::core::write::migrate::AfterFailure>,
    hint: &str,
    rollback: Option<&str>,
) -> Vec<String> {
    use crate::core::write::{FailureKind, UnitFailure};
    let printer = &context.printer;
    let (migration, not_attempted) = match &failure.unit {
        UnitFailure::Migration(detail) => (
            Some(detail.migration.as_str()),
            detail.not_attempted.clone(),
        ),
        UnitFailure::Other { .. } => (None, Vec::new()),
    };
    let headline = match (failure.kind, migration) {
        (FailureKind::LeaseLost, Some(name)) => format!(
            "the lock on `{env}` was lost (its lease expired or another session took it) before `{name}` ran; its unit was aborted by the lease guard"
        ),
        (FailureKind::LeaseLost, None) => {
            format!("the lock on `{env}` was lost; the unit was aborted by the lease guard")
        }
        _ => failure.unit.headline(),
    };
    printer.error(&headline, None);
    let mut lines = vec![headline];
    let state = match &failure.after {
        Ok(after) => {
            let committed = migration.is_some_and(|name| after.applied.iter().any(|a| a == name));
            let mut text = format!(
                "`{env}` now has {} applied{}",
                plural(after.applied.len(), "migration"),
                after
                    .applied
                    .last()
                    .map_or_else(String::new, |last| format!(" (the last is `{last}`)")),
            );
            if let Some(name) = migration {
                text.push_str(&match (committed, failure.kind) {
                    (true, _) => format!("; `{name}` is recorded as applied (its unit committed)"),
                    (false, FailureKind::OutcomeUnknown) => format!(
                        "; the response was lost, and the ledger shows `{name}` did not commit, so nothing of it ran"
                    ),
                    (false, _) => format!("; `{name}` was rolled back and left no trace"),
                });
            }
            if !not_attempted.is_empty() {
                text.push_str(&format!("; not attempted: {}", not_attempted.join(", ")));
            }
            text.push_str(&format!(
                "\nits tables and views now: {}",
                if after.tables.is_empty() {
                    "none".to_owned()
                } else {
                    after.tables.join(", ")
                }
            ));
            text
        }
        Err(error) => format!(
            "could not re-read `{env}` after the failure ({error}): whether it committed is unknown; `d1ctl status {env}` shows it"
        ),
    };
    printer.message(&state);
    lines.push(state);
    // A lost lease says nothing about the migration's text: the hint is about the lock.
    let lease_hint;
    let hint = if failure.kind == FailureKind::LeaseLost {
        lease_hint = format!(
            "the migration is not at fault: `d1ctl lock status {env}` shows who holds the lock now; run the command again once it is free"
        );
        &lease_hint
    } else {
        hint
    };
    printer.message(&format!("\n{}: {hint}", printer.paint(Style::Cyan, "hint")));
    if let Some(rollback) = rollback {
        printer.message(&format!(
            "{}: {rollback}",
            printer.paint(Style::Cyan, "rollback")
        ));
    }
    lines
}

/// `42 s`, `5 min`, `3 h`, `2 days`.
pub(crate) fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    }
}

/// `1 migration`, `2 migrations`.
pub(crate) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A unified diff of two texts, each given with its header label (`--- label`, `+++ label`),
/// three lines of context, coloured when stdout allows it.
pub(crate) fn unified_diff(printer: &Printer, old: (&str, &str), new: (&str, &str)) -> String {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(old.1, new.1);
    let mut out = format!("--- {}\n+++ {}\n", old.0, new.0);
    for group in diff.grouped_ops(3) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        out.push_str(&printer.paint_out(
            Style::Cyan,
            &format!(
                "@@ -{},{} +{},{} @@",
                first.old_range().start + 1,
                last.old_range().end - first.old_range().start,
                first.new_range().start + 1,
                last.new_range().end - first.new_range().start
            ),
        ));
        out.push('\n');
        for op in &group {
            for change in diff.iter_changes(op) {
                let (sign, style) = match change.tag() {
                    ChangeTag::Delete => ("-", Some(Style::Red)),
                    ChangeTag::Insert => ("+", Some(Style::Green)),
                    ChangeTag::Equal => (" ", None),
                };
                // A CRLF file's `\r` would only garble the terminal line.
                let line = format!("{sign}{}", change.value().trim_end_matches(['\n', '\r']));
                out.push_str(&style.map_or_else(|| line.clone(), |s| printer.paint_out(s, &line)));
                out.push('\n');
            }
        }
    }
    out
}

/// A path as the user would type it: relative to the current folder when under it.
pub(crate) fn display_path(path: &Path) -> String {
    let path = path.strip_prefix("./").unwrap_or(path);
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// What credential resolution needs to know of a `d1` env.
pub(crate) fn credential_request<'a>(
    registry: &'a Registry,
    env: &'a Environment,
    target: &'a D1Target,
) -> credentials::Request<'a> {
    credentials::Request {
        env: &env.name,
        config_dir: &registry.root,
        token_env: target.token_env.as_deref(),
        account_id: target.account_id.as_deref(),
        database_id: target.database_id.as_deref(),
        config_path: &registry.path,
    }
}

fn simulator_database_id(env: &Environment, target: &D1Target) -> anyhow::Result<String> {
    target.database_id.clone().ok_or_else(|| {
        UserError::new(
            format!(
                "env `{}` runs on the simulator but has no `database_id`",
                env.name
            ),
            "give it any UUID, e.g. `database_id = \"00000000-0000-4000-8000-000000000001\"`",
        )
        .into()
    })
}

pub(crate) async fn run(mut cli: Cli, printer: Printer) -> ExitStatus {
    // `--yes` is global and some commands have their own: either one confirms both ways.
    let own_yes = match &mut cli.command {
        Command::Plan(args) | Command::Promote(args) => Some(&mut args.yes),
        Command::Rollback(args) => Some(&mut args.yes),
        Command::Baseline(args) => Some(&mut args.yes),
        Command::Pull(args) => Some(&mut args.yes),
        _ => None,
    };
    let yes = match own_yes {
        Some(own) => {
            *own |= cli.global.yes;
            *own
        }
        None => cli.global.yes,
    };
    let context = Context {
        printer,
        config: cli.global.config,
        simulator: OnceLock::new(),
        http: OnceLock::new(),
        yes,
        warned_simulated: AtomicBool::new(false),
        redirects_confirmed: Mutex::new(Vec::new()),
    };
    let result = match cli.command {
        Command::Status(args) => status::status(args, &context).await,
        Command::Apply(args) => apply::apply(args, &context).await,
        Command::New(args) => new::new(&args, &context),
        Command::Sim(args) => sim::sim(args, &context).await,
        Command::Auth(args) => auth::auth(args, &context).await,
        Command::Drift(args) => drift::drift(args, &context).await,
        Command::Export(args) => export::export(args, &context).await,
        Command::Pull(args) => pull::pull(args, &context).await,
        Command::Plan(args) => promote::plan(args, &context).await,
        Command::Promote(args) => promote::promote(args, &context).await,
        Command::Rollback(args) => rollback::rollback(args, &context).await,
        Command::Lock(command) => lock::lock(command, &context).await,
        Command::Baseline(args) => baseline::baseline(args, &context).await,
        Command::Init(args) => init::init(&args, &context),
        Command::Lint(args) => lint::lint(args, &context).await,
        Command::Rehearse(args) => rehearse::rehearse(args, &context).await,
        Command::Checklist(args) => checklist::checklist(args, &context).await,
        Command::Completions(args) => completions(&args, &context),
    };
    let status = match result {
        Ok(status) => status,
        Err(error) => report_error(&context.printer, &error),
    };
    context.finish();
    status
}

/// `d1ctl completions SHELL`: the completion script on stdout.
fn completions(
    args: &crate::cli::CompletionsArgs,
    context: &Context,
) -> anyhow::Result<ExitStatus> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut <Cli as clap::CommandFactory>::command(),
        "d1ctl",
        &mut script,
    );
    context.printer.data(&String::from_utf8_lossy(&script))?;
    Ok(ExitStatus::Success)
}

/// Prints an error with its cause chain and hint; a closed stdout (`| head`) is not an error.
fn report_error(printer: &Printer, error: &anyhow::Error) -> ExitStatus {
    if error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return ExitStatus::Success;
    }
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    printer.error(&text, hint_for(error).as_deref());
    ExitStatus::Error
}

fn hint_for(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        if let Some(error) = cause.downcast_ref::<ConfigError>() {
            Some(error.hint.clone())
        } else if let Some(error) = cause.downcast_ref::<MigrationError>() {
            error.hint()
        } else if let Some(error) = cause.downcast_ref::<BackendError>() {
            error.hint()
        } else if let Some(error) = cause.downcast_ref::<D1Error>() {
            error.hint()
        } else if let Some(error) = cause.downcast_ref::<CredentialError>() {
            error.hint()
        } else if let Some(error) = cause.downcast_ref::<ExportError>() {
            error.hint()
        } else if let Some(error) = cause.downcast_ref::<RehearsalError>() {
            error.hint()
        } else if let Some(error) = cause.downcast_ref::<crate::core::write::WriteError>() {
            error.hint()
        } else {
            cause
                .downcast_ref::<UserError>()
                .map(|error| error.hint.clone())
        }
    })
}

/// Reads an environment's ledgers, naming the environment on failure.
pub(crate) async fn read_ledgers(
    ledgers: &crate::core::ledger::Ledgers,
    backend: &dyn Backend,
    env: &Environment,
) -> anyhow::Result<crate::core::ledger::LedgerState> {
    ledgers
        .read(backend)
        .await
        .with_context(|| format!("could not read the ledgers of env `{}`", env.name))
}
