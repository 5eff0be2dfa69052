//! The arguments of each command (the commands themselves are listed in `Command`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

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

    /// A fleet to create at start: `tenant-:200` makes `tenant-1` … `tenant-200`, keeping
    /// those that exist (repeatable).
    #[arg(long = "create", value_name = "PREFIX:COUNT")]
    pub(crate) fleets: Vec<String>,
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

#[derive(Debug, Args)]
pub(crate) struct DriftArgs {
    /// An environment, or `migrations` for the migrations folder replayed in memory.
    #[arg(value_name = "A")]
    pub(crate) first: String,

    /// What to compare A with; without it, A is compared with the migrations its ledger records.
    #[arg(value_name = "B")]
    pub(crate) second: Option<String>,

    /// Count ledger differences as drift too (exit 1), not only schema differences.
    #[arg(long)]
    pub(crate) ledgers: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The environment (name or alias).
    #[arg(value_name = "ENV")]
    pub(crate) environment: String,

    /// Leave out the rows: schema only.
    #[arg(long, conflicts_with = "no_schema")]
    pub(crate) no_data: bool,

    /// Leave out the schema: rows only.
    #[arg(long)]
    pub(crate) no_schema: bool,

    /// Export only this table (repeatable).
    #[arg(long = "table", value_name = "TABLE")]
    pub(crate) tables: Vec<String>,

    /// Where to write the dump; stdout when not given.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The environment to copy from (name or alias).
    #[arg(value_name = "ENV")]
    pub(crate) environment: String,

    /// The local `sqlite` environment to copy into.
    #[arg(long, value_name = "LOCAL_ENV")]
    pub(crate) into: String,

    /// Overwrite a target that has data without asking.
    #[arg(short, long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// The local `sqlite` environment to recreate (name or alias).
    #[arg(value_name = "LOCAL_ENV")]
    pub(crate) environment: String,

    /// Copy this env's schema and data instead, as `d1ctl pull ENV --into LOCAL_ENV` does.
    #[arg(long, value_name = "ENV")]
    pub(crate) from: Option<String>,

    /// Show what would be replaced and write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Replace a file that has rows without asking.
    #[arg(short, long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// The environment to bring up to date (name or alias).
    #[arg(long = "to", value_name = "ENV")]
    pub(crate) to: String,

    /// Walk every lagging rung from the lowest up to ENV, each with its own gates.
    #[arg(long)]
    pub(crate) cascade: bool,

    /// Show the plan and write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Confirm promotions to protected environments without asking.
    #[arg(short, long)]
    pub(crate) yes: bool,

    /// Apply every pending migration of a rung as one atomic unit.
    #[arg(long)]
    pub(crate) all_in_one: bool,

    /// Skip the env's `before` and `after` hooks.
    #[arg(long)]
    pub(crate) no_hooks: bool,

    /// Rehearse the pending migrations on a copy of the target's data first, as a gate: any
    /// lost row, failed migration or broken foreign key blocks the promotion.
    #[arg(long)]
    pub(crate) rehearse: bool,

    /// With `plan` (or `--dry-run`): exit 1 also when there is something to apply, as
    /// `git diff --exit-code` does, so a check can tell "nothing pending" from "ready to go".
    #[arg(long)]
    pub(crate) exit_code: bool,

    /// Fleet envs: promote the first N members, verify them, and stop for a confirmation
    /// (`--yes` goes on). The same as `--waves N,100%`.
    #[arg(long, value_name = "N", conflicts_with = "waves")]
    pub(crate) canary: Option<usize>,

    /// Fleet envs: promote in waves of cumulative sizes, e.g. `1,10%,100%`, verifying each
    /// and asking before the next (`--yes` goes on while no member of a wave failed).
    #[arg(long, value_name = "SIZES", value_delimiter = ',')]
    pub(crate) waves: Vec<WaveSize>,

    /// Fleet envs: stop starting members after this many failures (members in flight finish).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) max_failures: usize,

    /// Fleet envs: members promoted at once (all of them within the `--rate` budget).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub(crate) concurrency: usize,
}

/// A wave's cumulative size: a member count, or a percentage of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaveSize {
    Members(usize),
    Percent(u8),
}

impl WaveSize {
    /// How many members the wave reaches in a fleet of `total` (a percentage rounds up).
    pub(crate) fn of(self, total: usize) -> usize {
        match self {
            WaveSize::Members(count) => count.min(total),
            WaveSize::Percent(percent) => (total * usize::from(percent)).div_ceil(100),
        }
    }
}

impl std::str::FromStr for WaveSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            return match percent.parse::<u8>() {
                Ok(percent @ 1..=100) => Ok(WaveSize::Percent(percent)),
                _ => Err(format!("`{text}`: a wave's percentage is 1% to 100%")),
            };
        }
        match text.parse::<usize>() {
            Ok(count) if count > 0 => Ok(WaveSize::Members(count)),
            _ => Err(format!(
                "`{text}` is not a wave size; write a member count or a percentage, e.g. `1,10%,100%`"
            )),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct RehearseArgs {
    /// The environment whose data the pending migrations are rehearsed on (name or alias).
    #[arg(long = "to", value_name = "ENV")]
    pub(crate) to: String,

    /// Apply every pending migration as one atomic unit, as `promote --all-in-one` does.
    #[arg(long)]
    pub(crate) all_in_one: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The environment (name or alias).
    #[arg(value_name = "ENV")]
    pub(crate) environment: String,

    /// The rollback point: a D1 bookmark, or a SQLite backup file.
    #[arg(
        long,
        value_name = "POINT",
        conflicts_with = "last",
        required_unless_present = "last"
    )]
    pub(crate) bookmark: Option<String>,

    /// The newest rollback point recorded on the environment.
    #[arg(long)]
    pub(crate) last: bool,

    /// Confirm without asking (protected environments).
    #[arg(short, long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LockCommand {
    /// Who holds the environment's promotion lock, if anyone.
    Status {
        #[arg(value_name = "ENV")]
        environment: String,
    },
    /// Release the lock held by holder ID (from `lock status`).
    Release {
        #[arg(value_name = "ENV")]
        environment: String,
        #[arg(long, value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct BaselineArgs {
    /// The environment (name or alias).
    #[arg(value_name = "ENV")]
    pub(crate) environment: String,

    /// The last migration the database already has (default: all of the folder).
    #[arg(long, value_name = "NAME")]
    pub(crate) through: Option<String>,

    /// Confirm without asking (protected environments).
    #[arg(short, long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The wrangler config to read (default: wrangler.toml, wrangler.jsonc or wrangler.json here).
    #[arg(long, value_name = "PATH")]
    pub(crate) wrangler_config: Option<PathBuf>,

    /// Update an existing environments.toml (keeping its comments) instead of refusing.
    #[arg(long)]
    pub(crate) force: bool,

    /// Show what would be written and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LintArgs {
    /// Lint what is pending on this environment, using its row counts.
    #[arg(long = "to", value_name = "ENV", conflicts_with = "files")]
    pub(crate) to: Option<String>,

    /// Migration files to lint (default: all of the folder).
    #[arg(value_name = "FILES")]
    pub(crate) files: Vec<String>,

    /// Rewrite FILES so their rebuilds keep every row on D1 (D1001), show the diff, lint again.
    /// Refused for a migration that an env has applied, or when an env cannot be read.
    #[arg(long, requires = "files", conflicts_with = "to")]
    pub(crate) fix: bool,

    /// With `--fix`: show the diff and the lint of the rewrite; write nothing.
    #[arg(long, requires = "fix")]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ChecklistArgs {
    /// The environment the release promotes to (name or alias).
    #[arg(long = "to", value_name = "ENV")]
    pub(crate) to: String,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_name = "SHELL")]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StepCommand {
    /// Run one data step on one environment; a step that finished there is not run again.
    Run(StepRunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StepRunArgs {
    /// The step's `name` in environments.toml.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    /// The environment (name or alias).
    #[arg(long = "env", value_name = "ENV")]
    pub(crate) environment: String,

    /// Run again a step that started and did not finish (a crash, Ctrl-C, a failing command),
    /// once you have checked what it did.
    #[arg(long, conflicts_with = "force")]
    pub(crate) rerun_interrupted: bool,

    /// Run again a step that finished (or was edited since): it repeats its work. Asks first
    /// (`--yes` confirms).
    #[arg(long)]
    pub(crate) force: bool,

    /// Show what would run and its estimated rows; write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}
