//! Command-line types: what the user typed. `src/commands` turns them into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) use args::*;

mod args;
pub(crate) mod fleet_progress;
pub(crate) mod printer;
pub(crate) mod prompt;
pub(crate) mod reporter;
pub(crate) mod step_progress;

/// `0.1.0 (abc1234)`: the package version and the git revision it was built from.
const VERSION: &str = match option_env!("D1CTL_GIT_REVISION") {
    Some(_) => concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("D1CTL_GIT_REVISION"),
        ")"
    ),
    None => env!("CARGO_PKG_VERSION"),
};

const AFTER_HELP: &str = "\
Examples:
  d1ctl status                                  every environment of the ladder, as a matrix
  d1ctl apply local                             apply pending migrations to the `local` env
  d1ctl promote --to staging                    staging gets exactly what dev ran, after gates
  d1ctl promote --to production --cascade --yes every lagging rung up to production
  d1ctl drift prod local                        do production and local have the same schema?
  d1ctl checklist --to production > release.md  the release checklist for the PR
  d1ctl lint                                    what will go wrong on D1
  d1ctl rehearse --to production                the pending migrations on a copy of its data

Exit codes: 0 ok; 1 something needs your attention (drift, a gate that refuses, a failed
migration, a lint error); 2 usage, configuration, credential, network or internal error.";

/// Carries SQL migrations for Cloudflare D1 from a laptop to production, one rung at a time.
#[derive(Debug, Parser)]
#[command(name = "d1ctl", version = VERSION, about, after_help = AFTER_HELP, propagate_version = true)]
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

    /// Print more about what d1ctl does (logs on stderr); `-vv` adds a line per HTTP request
    /// (method, URL, status, time; never the token).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// When to use colours; `NO_COLOR` in the environment means never, unless `always`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub(crate) color: ColorChoice,

    /// Confirm without asking: writes to protected environments, and sending a protected
    /// env's token to where `CLOUDFLARE_API_BASE_URL` redirects it (reads included).
    #[arg(short, long, global = true)]
    pub(crate) yes: bool,

    /// The account's D1 API budget every request of this run draws from, as requests per
    /// period (`1200/5m` is Cloudflare's documented limit per user; lower it when other tools
    /// share the token's user).
    #[arg(
        long,
        global = true,
        value_name = "N/PERIOD",
        default_value = "1200/5m"
    )]
    pub(crate) rate: crate::d1::budget::Rate,

    /// Narrow a fleet env (`fleet.…` in environments.toml) to one of its databases, by name:
    /// every command then treats it as an env of that one database.
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) member: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    /// Markdown where a command has a document to give (`checklist`); text elsewhere.
    Markdown,
    /// GitHub Actions workflow commands (`lint`): annotations on the pull request; text elsewhere.
    Github,
    /// SARIF 2.1.0 (`lint`), for code scanning; text elsewhere.
    Sarif,
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
  d1ctl status tenants             a fleet: every member read, grouped by ledger state
  d1ctl status --format json       {\"environments\":[{\"name\",\"backend\",\"migrations\":[{\"name\",\"state\"}]}]}

States: applied, pending, checksum_mismatch (the file changed after it ran; \"line endings only\"
when only CRLF/LF or a BOM differ), missing_locally (in a ledger, not in the folder).
A fleet env named alone reads each member once (about one request each) and lists every member
in JSON; in the matrix a fleet is only listed. Exits 1 when a file was edited after it ran (on
any member), or a member could not be read.")]
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

    /// Show what `promote --to ENV` would do: the migrations, the gates, the lock, the rollback point.
    #[command(after_help = "\
Examples:
  d1ctl plan --to staging                  what staging would get from dev
  d1ctl plan --to production --cascade     every lagging rung up to production
  d1ctl plan --to staging --format json
  d1ctl plan --to staging --exit-code      exit 1 when anything is pending, too

Exits 0 when the plan can go ahead (or there is nothing to do), 1 when a gate blocks it (with
`--exit-code`, also when there is anything to apply), 2 on errors.")]
    Plan(PromoteArgs),

    /// Apply to an environment exactly what the rung below it already ran, after gates.
    #[command(after_help = "\
Examples:
  d1ctl promote --to staging               bring staging up to dev
  d1ctl promote --to production --cascade --yes
                                           every lagging rung, lowest first, up to production
  d1ctl promote --to staging --dry-run     the plan, nothing written
  d1ctl promote --to staging --all-in-one  every pending migration in one atomic unit
  d1ctl promote --to production --rehearse rehearse on a copy of production's data first

The first rung's source is the migrations folder; every other rung's source is the rung before
it. Gates (each must pass, or nothing is written): checksums, files, order, ancestry, source
drift, lint, lock, and with `--rehearse` the rehearsal (the pending migrations on a copy of the
target's data: no rows lost, none failed, no foreign key broken). A rollback point (D1 Time
Travel bookmark, or a SQLite backup under `.d1ctl/backups/`) is taken before the first write,
and the output ends with the exact rollback command. A `protected` env asks you to type its name; without a terminal it refuses unless
`--yes` is given (CI=true confirms nothing).

Fleet envs (`fleet.…`: one env of many tenant databases) are promoted member by member at the
`--rate` budget, about one request each: every member is expected in the state of the members
before it, and one guarded batch takes its lock, records its rollback point (its own clock, for
Time Travel), applies, releases and verifies. A member in another state is read and takes the
full path (laggards are brought up, drifted members refused by name).
  d1ctl promote --to tenants --canary 5    5 members, verified, then ask before the rest
  d1ctl promote --to tenants --waves 1,10%,100% --yes
  d1ctl promote --to tenants --member tenant-17
                                           one member, as an env of one database
A rerun resumes: each member's own ledger says what it has, nothing is applied twice, and a
finished member costs one read. Ctrl-C lets members in flight finish and stops.")]
    Promote(PromoteArgs),

    /// Restore an environment to a rollback point taken before a promotion.
    #[command(after_help = "\
Examples:
  d1ctl rollback staging --last            the newest rollback point recorded on staging
  d1ctl rollback staging --bookmark 00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683
  d1ctl rollback local --bookmark .d1ctl/backups/local-2026-11-21T21-33-40-023Z.sqlite

A restore replaces the whole database: writes after the point are lost. The state it replaces
is kept (D1: the previous bookmark; SQLite: another backup), so a rollback can be undone.")]
    Rollback(RollbackArgs),

    /// Show or release an environment's promotion lock.
    #[command(
        subcommand,
        after_help = "\
Examples:
  d1ctl lock status staging
  d1ctl lock release staging --id 3f9a…    release a lock whose holder died
  d1ctl lock status tenants                 a fleet: members locked, grouped by holder
  d1ctl lock release tenants --id 3f9a…    that holder's lease on every member that has it"
    )]
    Lock(LockCommand),

    /// Run-once data steps (backfills, one-off fixes) declared as `[[step]]` in environments.toml.
    #[command(
        subcommand,
        after_help = "\
Examples:
  d1ctl step run backfill-metrics --env staging
  d1ctl step run backfill-metrics --env production --dry-run     its state and estimated rows
  d1ctl step run reindex --env dev --rerun-interrupted           after checking what it did
  d1ctl step run backfill-metrics --env dev --force --yes        run a finished step again

A step runs once per env, after the migration its `after` names, and is recorded in that env's
`_d1ctl_steps`. `promote` runs the steps whose migration the target has and that the rung below
finished; `status`, `plan` and `checklist` list them. An SQL step runs as one atomic request; a
chunked one (`chunked = true`) repeats its one statement with a `LIMIT`, one atomic request per
batch, until it changes no row, and a run stopped between batches continues where it stopped. A
command step runs with `sh -c` in the folder of environments.toml, with D1CTL_ENV, D1CTL_BACKEND,
D1CTL_SQLITE_PATH (sqlite) or D1CTL_ACCOUNT_ID, D1CTL_DATABASE_ID, D1CTL_DATABASE_NAME (d1) set,
and the token as CLOUDFLARE_API_TOKEN only with `needs_token = true`; one that started and did
not finish is interrupted and runs again only with `--rerun-interrupted`.
Each run takes a rollback point first. Exits 1 when the step waits, is blocked or fails."
    )]
    Step(StepCommand),

    /// Record the migrations an untracked database already has, after proving its schema.
    #[command(after_help = "\
Examples:
  d1ctl baseline production                        every migration of the folder
  d1ctl baseline production --through 0007_tags.sql

The env's schema must equal the replay of the migrations up to NAME (tables of the ledgers
ignored); then they are recorded as applied in every ledger. A different schema is refused with
the difference (exit 1).")]
    Baseline(BaselineArgs),

    /// Compare the schemas of two environments, or of an env and its migrations.
    #[command(after_help = "\
Examples:
  d1ctl drift prod local           production against the local env
  d1ctl drift staging              staging against the migrations its ledger says it ran
  d1ctl drift migrations prod      the whole migrations folder against production
  d1ctl drift prod local --format json
  d1ctl drift prod local --ledgers  also exit 1 when one ledger lacks migrations

Ledger tables, `_cf_*`, `sqlite_*` and FTS shadow tables are ignored; quoting, keyword case,
whitespace and `IF NOT EXISTS` do not count as differences. Exits 0 when the schemas match,
1 when they differ, 2 on error.

When the schemas match but one ledger lacks migrations the other records, drift says which, and
whether that side's schema already has what they make (an untracked database: `d1ctl baseline
ENV` records them without running them) or cannot tell (they change no schema: `d1ctl status
ENV`). That is not drift unless `--ledgers` is given.")]
    Drift(DriftArgs),

    /// Write an environment's schema and data as SQL, in D1's dump format.
    #[command(after_help = "\
Examples:
  d1ctl export prod -o prod.sql            schema and data of production
  d1ctl export staging --no-data -o schema.sql
  d1ctl export local --table users --table posts > subset.sql

A D1 env is exported through Cloudflare's export API (polled, then downloaded to disk); a local
env is dumped by d1ctl in the same format, so a dump of either loads into the other. D1 refuses
to export databases with virtual tables (FTS5) unless `--table` names only ordinary tables.")]
    Export(ExportArgs),

    /// Copy an environment's schema and data into a local SQLite env ("sync from production").
    #[command(after_help = "\
Examples:
  d1ctl pull prod --into local             production's data into the `local` env
  d1ctl pull staging --into local --yes    overwrite a local env that has data, without asking

The target must be a local (`sqlite`) env that is not protected. Its previous file is kept under
`.d1ctl/backups/`, and its ledgers end up as the source's.")]
    Pull(PullArgs),

    /// Recreate a local SQLite env from nothing: a new file with every migration applied.
    #[command(after_help = "\
Examples:
  d1ctl reset local                        a new `local` file: every migration, no rows
  d1ctl reset local --yes                  replace a file that has rows without asking
  d1ctl reset local --from prod            as `d1ctl pull prod --into local`
  d1ctl reset local --dry-run              what would be replaced, nothing written
  d1ctl reset local --format json

The env must be a local (`sqlite`) env that is not protected. A file whose tables hold rows is
replaced only after you type the env's name (or with `--yes`; without a terminal it refuses).
The previous file is kept under `.d1ctl/backups/` and the output ends with the command that
restores it: `d1ctl rollback ENV --bookmark PATH`.")]
    Reset(ResetArgs),

    /// Apply the migrations `promote --to ENV` would apply to a copy of ENV's data, and compare.
    #[command(after_help = "\
Examples:
  d1ctl rehearse --to production               what the promotion does to production's rows
  d1ctl rehearse --to staging --all-in-one     every pending migration as one atomic unit
  d1ctl rehearse --to production --format json

The copy is a temp file under `.d1ctl/tmp` (removed afterwards): `VACUUM INTO` of a local env,
D1's export of a d1 env (D1 serves no queries while an export runs; the size is shown first).
The migrations run with D1's semantics (foreign keys always on, so a table rebuild cascades to
its children even inside `PRAGMA defer_foreign_keys`), each as one atomic unit, stopping at the
first failure. The output lists each table's rows before and after, the columns that lost
non-null values, `PRAGMA foreign_key_check`, and the time taken. Nothing is written to ENV; the
result is recorded in `.d1ctl/rehearsals/ENV.json`, which `checklist` shows.
Exits 0 when nothing was lost, 1 when a table kept by name lost rows or values, a migration
failed or a foreign key is violated, 2 on a configuration or network error.")]
    Rehearse(RehearseArgs),

    /// Check migrations for what goes wrong on D1: destructive changes, cascades, refused SQL.
    #[command(after_help = "\
Examples:
  d1ctl lint                                every migration of the folder
  d1ctl lint --to production                what production would get, with its row counts
  d1ctl lint migrations/0007_rebuild.sql
  d1ctl lint --format json
  d1ctl lint --format github                annotations on the pull request (GitHub Actions)
  d1ctl lint --format sarif > d1ctl.sarif   for code scanning
  d1ctl lint --fix migrations/0007_rebuild.sql            rewrite the rebuild so it keeps every row
  d1ctl lint --fix --dry-run migrations/0007_rebuild.sql  only show the diff

Rules: DS102 table dropped, DS103 column dropped, DS104 index dropped, BC101 table renamed,
BC102 column renamed, MF103 NOT NULL column without default on a table with rows, MF105 type
changed through a rebuild, D1001 a DROP whose ON DELETE CASCADE / SET NULL children lose rows
(deferred or not, on D1), D1002 PRAGMA foreign_keys (ignored by D1), D1003 unpaired PRAGMA
defer_foreign_keys, D1004 BEGIN/COMMIT/SAVEPOINT, D1005 ATTACH, D1006 statement over 100 KB,
D1007 _cf_ names, D1008 PRAGMAs D1 refuses, D1009 a DROP that fails once children without an
ON DELETE action hold rows, D1010 the same for RESTRICT children, D1011 other SQL D1's
authorizer refuses, LT001 migration fails;
with rows seeded into the shadow: DS105 rows or values lost that the migration does not name,
DS106 rows left pointing at nothing, MF106 fails once tables hold rows, LT002 not checked with
data.
Waive a finding in the migration itself: `-- d1ctl:allow DS102 dropping the legacy table`;
`-- d1ctl:allow DS105(posts) why` lets that one table lose rows.
Exits 1 when an error is not waived.

`--fix` rewrites a rebuild of a table that other tables reference (D1001, D1009, D1010) into a
rebuild of the whole family: every referencing table, transitively, is copied before the DROP
and renamed after it, its indexes, triggers and the views over it recreated; nothing else of
the file changes. Only a migration that no env has applied is rewritten: every env's ledgers are
read first, and one applied there or unreachable refuses the fix (exit 2). It prints the diff,
writes the file (not with `--dry-run`), then lints it again: exit 0 when that lint has no error
(or there was nothing to fix and none), 1 when errors remain, 2 when it refuses.")]
    Lint(LintArgs),

    /// The release checklist of a promotion, in markdown for the release PR (or JSON).
    #[command(after_help = "\
Examples:
  d1ctl checklist --to production                   markdown, ready to paste into the PR
  d1ctl checklist --to production > checklist.md
  d1ctl checklist --to staging --format json

It lists the target, both ledgers, each pending migration with its statement count and lint
findings (waived ones with their reason), what d1ctl verified (the promotion gates, the drift of
source and target), the lock, the rollback point and command, the hooks, and for protected
environments the sign-off boxes. For a fleet, those are the largest group's first member's, and a
fleet section adds the members grouped by what each would get, the stragglers, the rollout's
requests and time at the `--rate` budget, a canary command and the rollback. Exits 1 when
anything blocks the promotion (on any member).")]
    Checklist(ChecklistArgs),

    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  d1ctl completions bash > ~/.local/share/bash-completion/completions/d1ctl
  d1ctl completions zsh > \"${fpath[1]}/_d1ctl\"
  d1ctl completions fish > ~/.config/fish/completions/d1ctl.fish")]
    Completions(CompletionsArgs),

    /// Write environments.toml from your wrangler config (and a drizzle config, if any).
    #[command(after_help = "\
Examples:
  d1ctl init                               read wrangler.toml / wrangler.json / wrangler.jsonc here
  d1ctl init --wrangler-config worker/wrangler.toml
  d1ctl init --force                       update an existing environments.toml in place

Each [[d1_databases]] of the top level and of every [env.X] becomes an env; local envs are bound
to wrangler's own local state files; production is marked protected. A re-run updates
environments.toml in place and keeps your comments; it never overwrites silently.")]
    Init(InitArgs),

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
