//! One file per subcommand; this module dispatches and holds what they share.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::Context as _;

use crate::backend::{Backend, BackendError};
use crate::cli::printer::Printer;
use crate::cli::{Cli, Command};
use crate::core::export::ExportError;
use crate::core::migrations::{self, MigrationError, MigrationSet};
use crate::core::registry::{ConfigError, Environment, Registry};
use crate::core::rehearse::RehearsalError;
use crate::credentials::{self, CredentialError, ProcessEnvironment};
use crate::d1::client::D1Error;
use crate::sim::Simulator;

mod connect;
mod context;
mod data_steps;
mod fleet;
mod output;
mod replace;

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
mod reset;
mod rollback;
mod sim;
mod status;
mod step;

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

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

pub(crate) use connect::credential_request;
use connect::{BASE_URL_VARIABLE, simulated_with_token};
pub(crate) use context::{Rung, WriteRequest};
pub(crate) use output::{age, display_path, plural, simulator_mark, unified_diff, write_failure};

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
    /// Which local envs this command may create a missing `path` folder for: only commands
    /// that write (and not their `--dry-run`); for the others a missing folder is an error.
    creates_folders: FolderCreation,
    /// The API budget every D1 client of this run shares (`--rate`).
    pub(crate) budget: std::sync::Arc<crate::d1::budget::Budget>,
    /// `--member`: the one database of a fleet env this run is about.
    member: Option<String>,
}

/// See [`Context::creates_folders`].
pub(crate) enum FolderCreation {
    Never,
    /// The env named (or aliased) so on the command line.
    For(String),
    /// Any env (`promote --cascade` writes several rungs).
    Any,
}

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

    /// The project's migration set; its warnings are shown once here.
    pub(crate) fn migrations(&self, registry: &Registry) -> anyhow::Result<MigrationSet> {
        let set = migrations::load(&registry.project.migrations_dir, registry.project.layout)?;
        for warning in &set.warnings {
            self.printer.warning(warning);
        }
        for file in &set.skipped {
            let shown = display_path(&set.dir.join(&file.name));
            match &file.typo {
                Some(why) => self.printer.warning(&format!("skipped `{shown}`: {why}")),
                None => self.printer.detail(&format!(
                    "skipped `{shown}`: not a migration (only `*.sql` files are)"
                )),
            }
        }
        self.printer.detail(&format!(
            "{} {} migrations in `{}`",
            set.migrations.len(),
            set.layout,
            display_path(&set.dir)
        ));
        Ok(set)
    }

    /// Ends the command: an in-process simulator needs no graceful shutdown, since every
    /// request it served was committed before it answered.
    fn finish(mut self) {
        if let Some(simulator) = self.simulator.take() {
            std::mem::forget(simulator);
        }
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

pub(crate) async fn run(mut cli: Cli, printer: Printer) -> ExitStatus {
    // `--yes` is global and some commands have their own: either one confirms both ways.
    let own_yes = match &mut cli.command {
        Command::Plan(args) | Command::Promote(args) => Some(&mut args.yes),
        Command::Rollback(args) => Some(&mut args.yes),
        Command::Baseline(args) => Some(&mut args.yes),
        Command::Pull(args) => Some(&mut args.yes),
        Command::Reset(args) => Some(&mut args.yes),
        _ => None,
    };
    let yes = match own_yes {
        Some(own) => {
            *own |= cli.global.yes;
            *own
        }
        None => cli.global.yes,
    };
    let creates_folders = match &cli.command {
        Command::Apply(args) if !args.dry_run => FolderCreation::For(args.environment.clone()),
        Command::Baseline(args) => FolderCreation::For(args.environment.clone()),
        Command::Pull(args) => FolderCreation::For(args.into.clone()),
        Command::Reset(args) if !args.dry_run => FolderCreation::For(args.environment.clone()),
        Command::Promote(args) if !args.dry_run && args.cascade => FolderCreation::Any,
        Command::Promote(args) if !args.dry_run => FolderCreation::For(args.to.clone()),
        _ => FolderCreation::Never,
    };
    let context = Context {
        creates_folders,
        printer,
        config: cli.global.config,
        simulator: OnceLock::new(),
        http: OnceLock::new(),
        yes,
        warned_simulated: AtomicBool::new(false),
        redirects_confirmed: Mutex::new(Vec::new()),
        budget: std::sync::Arc::new(crate::d1::budget::Budget::new(cli.global.rate)),
        member: cli.global.member,
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
        Command::Reset(args) => reset::reset(args, &context).await,
        Command::Plan(args) => promote::plan(args, &context).await,
        Command::Promote(args) => promote::promote(args, &context).await,
        Command::Rollback(args) => rollback::rollback(args, &context).await,
        Command::Lock(command) => lock::lock(command, &context).await,
        Command::Step(command) => step::step(command, &context).await,
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
    let hint = hint_for(error);
    printer.error(&text, hint.as_deref());
    let status = ExitStatus::Error;
    printer.json_error(status.code(), &text, hint.as_deref());
    status
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
