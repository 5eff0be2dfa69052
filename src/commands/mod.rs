//! One file per subcommand; this module dispatches and holds what they share.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::backend::{Backend, BackendError};
use crate::cli::printer::{Printer, Style};
use crate::cli::{Cli, Command};
use crate::core::migrations::{self, MigrationError, MigrationSet};
use crate::core::registry::{ConfigError, Environment, Registry, Target};
use crate::local::SqliteBackend;

mod apply;
mod new;
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
}

impl Context {
    pub(crate) fn registry(&self) -> anyhow::Result<Registry> {
        Ok(Registry::load(&self.config, &|name| {
            std::env::var(name).ok()
        })?)
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

    #[expect(
        clippy::unused_self,
        reason = "the D1 backend needs the context's credentials"
    )]
    pub(crate) fn backend(&self, env: &Environment) -> anyhow::Result<Box<dyn Backend>> {
        match &env.target {
            Target::Sqlite(target) => Ok(Box::new(SqliteBackend::new(&target.path))),
            Target::D1(_) => Err(UserError::new(
                format!(
                    "env `{}` uses the `d1` backend, which this build cannot reach yet",
                    env.name
                ),
                "point the env at a local file with `backend = \"sqlite\"` for now",
            )
            .into()),
        }
    }

    /// The one line every command that touches an env prints first: which database it is.
    pub(crate) fn target_line(&self, env: &Environment, backend: &dyn Backend) -> String {
        format!(
            "{} {} ({}, {}{})",
            self.printer.paint(Style::Bold, "target:"),
            self.printer.paint(Style::Cyan, &env.name),
            backend.kind(),
            backend.location(),
            if env.protected { ", protected" } else { "" }
        )
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

/// `1 migration`, `2 migrations`.
pub(crate) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
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

pub(crate) async fn run(cli: Cli, printer: Printer) -> ExitStatus {
    let context = Context {
        printer,
        config: cli.global.config,
    };
    let result = match cli.command {
        Command::Status(args) => status::status(args, &context).await,
        Command::Apply(args) => apply::apply(args, &context).await,
        Command::New(args) => new::new(&args, &context),
    };
    match result {
        Ok(status) => status,
        Err(error) => report_error(&context.printer, &error),
    }
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
