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

    /// Show where each credential of an env comes from; keep API tokens in the OS keyring.
    #[command(after_help = "\
Examples:
  d1ctl auth status                 every env that reaches Cloudflare
  d1ctl auth status staging --format json
  d1ctl auth login production       store a token in the OS keyring (hidden prompt)
  echo \"$TOKEN\" | d1ctl auth login production
  d1ctl auth logout production

Tokens are looked up in this order: the process environment (CLOUDFLARE_D1_TOKEN_<ENV>, the env's
`token_env` variable, CLOUDFLARE_D1_TOKEN, CLOUDFLARE_API_TOKEN), then `.dev.vars.<env>`,
`.dev.vars` and `.env` beside environments.toml, then the OS keyring (service `d1ctl`).
Secrets are never printed. `auth status` exits 1 when a value is missing.")]
    Auth(AuthArgs),

    /// Serve the bundled D1 HTTP API simulator (for your own CI and tests).
    #[command(after_help = "\
Examples:
  d1ctl sim --port 8787 --data .d1ctl/sim --token test-token \\
      --database app-staging=00000000-0000-4000-8000-000000000002
  CLOUDFLARE_API_BASE_URL=http://127.0.0.1:8787/client/v4 CLOUDFLARE_API_TOKEN=test-token d1ctl status staging

Any account id is accepted. Databases exist once declared with `--database` or created through
the API; data persists in `--data` across restarts. `GET /__sim/stats` counts API requests and
`POST /__sim/faults` injects latency, 5xx, dropped connections and 429s.")]
    Sim(SimArgs),
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

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    pub(crate) port: u16,

    /// Address to listen on; keep it on loopback.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,

    /// Folder for the simulated databases (kept across restarts).
    #[arg(long, value_name = "DIR", default_value = ".d1ctl/sim")]
    pub(crate) data: PathBuf,

    /// API token the simulator accepts (repeatable).
    #[arg(long = "token", value_name = "TOKEN")]
    pub(crate) tokens: Vec<String>,

    /// A database to create at start, `NAME=UUID` (repeatable).
    #[arg(long = "database", value_name = "NAME=UUID")]
    pub(crate) databases: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AuthArgs {
    #[command(subcommand)]
    pub(crate) command: AuthCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// Where each credential comes from (never the secret itself).
    Status {
        /// Environments (names or aliases); every env that reaches Cloudflare when none is given.
        #[arg(value_name = "ENV")]
        environments: Vec<String>,
    },
    /// Store an API token in the OS keyring: from a hidden prompt, or stdin when piped.
    Login {
        #[arg(value_name = "ENV")]
        environment: String,
    },
    /// Remove an env's API token from the OS keyring.
    Logout {
        #[arg(value_name = "ENV")]
        environment: String,
    },
}
