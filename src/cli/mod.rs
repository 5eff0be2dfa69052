//! Command-line types: what the user typed. `src/commands` turns them into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) mod printer;
pub(crate) mod reporter;

const AFTER_HELP: &str = "\
Examples:
  d1ctl apply local                 apply pending migrations to the `local` env
  d1ctl status                      show every environment of the ladder
  d1ctl status local --format json  machine-readable status for CI
  d1ctl new add_users               create the next migration file

Exit codes: 0 ok, 1 something needs your attention (failed migration, checksum mismatch),
2 usage, configuration, credential, network or internal error.";

/// Carries SQL migrations for Cloudflare D1 from a laptop to production, one rung at a time.
#[derive(Debug, Parser)]
#[command(name = "d1ctl", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Path of the environment registry.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "environments.toml"
    )]
    pub(crate) config: PathBuf,

    /// Output format: text for people, json for CI (printed on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,

    /// Print only data and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// Print more about what d1ctl does (logs on stderr).
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,

    /// When to use colours; `NO_COLOR` in the environment means never, unless `always`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show which migrations each environment has applied.
    #[command(after_help = "\
Examples:
  d1ctl status                     every environment, ladder order, as a matrix
  d1ctl status local               one environment
  d1ctl status local prod          two environments side by side (aliases work)
  d1ctl status --format json       {\"environments\":[{\"name\",\"backend\",\"migrations\":[{\"name\",\"state\"}]}]}

States: applied, pending, checksum_mismatch (the file changed after it ran; \"line endings only\"
when only CRLF/LF or a BOM differ), missing_locally (in a ledger, not in the folder).
Exits 1 when a file was edited after it ran.")]
    Status(StatusArgs),

    /// Apply every pending migration to an environment, each in its own atomic unit.
    #[command(after_help = "\
Examples:
  d1ctl apply local                apply what is pending to the `local` env
  d1ctl apply local --dry-run      list what would be applied, change nothing

Each migration runs with its ledger rows in one transaction: a failing migration leaves no
trace, earlier ones stay applied, and a rerun after the fix continues where it stopped.
Protected environments are refused: they are reached with `d1ctl promote`.")]
    Apply(ApplyArgs),

    /// Create the next migration file (wrangler layout).
    #[command(after_help = "\
Examples:
  d1ctl new add_users              creates migrations/0002_add_users.sql
  d1ctl new \"add posts\"            spaces become underscores, as with wrangler

In a drizzle-kit folder, generate migrations with `drizzle-kit generate` instead.")]
    New(NewArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Environments (names or aliases); all of them when none is given.
    #[arg(value_name = "ENV")]
    pub(crate) environments: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The environment (name or alias).
    #[arg(value_name = "ENV")]
    pub(crate) environment: String,

    /// Show what would be applied and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// What the migration does, e.g. `add_users`.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
}
