//! `d1ctl init`: write `environments.toml` from the wrangler config (and a drizzle config).
//!
//! Every `[[d1_databases]]` section of the wrangler config becomes an env: the top level's, and
//! each `[env.X]`'s (wrangler does not inherit D1 bindings into environments). A `local` env is
//! bound to wrangler's own local state file. A re-run with `--force` edits the file in place with
//! `toml_edit`, so the user's comments, keys and envs stay as they are.

use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use toml_edit::{Array, Decor, DocumentMut, Item, Table, TableLike, Value};

use crate::cli::InitArgs;
use crate::commands::{Context, ExitStatus, UserError, display_path, plural};
use crate::core::registry::{DEFAULT_LEDGER, RESERVED_NAME, Registry};
use crate::core::wrangler_config::{
    self, D1Database, DRIZZLE_DEFAULT_OUT, DrizzleOut, WRANGLER_CONFIG_NAMES,
    WRANGLER_DEFAULT_MIGRATIONS_DIR, WranglerConfig, WranglerConfigError,
};

/// Names that make an env the last rung, `protected`.
const PRODUCTION_NAMES: [&str; 4] = ["production", "prod", "live", "main"];
const STAGING_NAMES: [&str; 3] = ["staging", "stage", "qa"];
const DEVELOPMENT_NAMES: [&str; 3] = ["dev", "development", "preview"];

/// What `${VAR}` reads while the result is validated: the file is checked for its structure, and
/// a variable unset in this shell must not make a correct file look broken.
const VALIDATION_PLACEHOLDER: &str = "https://d1ctl-init.invalid";

/// Where an env goes on the ladder: lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    Local,
    Development,
    Other,
    Staging,
    Production,
}

fn tier_of(name: &str) -> Tier {
    let name = name.to_ascii_lowercase();
    if PRODUCTION_NAMES.contains(&name.as_str()) {
        Tier::Production
    } else if STAGING_NAMES.contains(&name.as_str()) {
        Tier::Staging
    } else if DEVELOPMENT_NAMES.contains(&name.as_str()) {
        Tier::Development
    } else {
        Tier::Other
    }
}

/// The environments.toml that the wrangler config describes.
#[derive(Debug)]
struct Plan {
    migrations_dir: String,
    /// `Some` only when wrangler's `migrations_table` is not the default.
    ledger: Option<String>,
    /// In ladder order.
    envs: Vec<PlannedEnv>,
    warnings: Vec<String>,
}

#[derive(Debug)]
struct PlannedEnv {
    name: String,
    tier: Tier,
    aliases: Vec<String>,
    protected: bool,
    /// The comment above a new `[env.NAME]` table: where it comes from.
    comment: String,
    target: PlannedTarget,
}

#[derive(Debug)]
enum PlannedTarget {
    Sqlite {
        wrangler_database_id: String,
        wrangler_dir: String,
    },
    D1 {
        database_name: String,
        database_id: Option<String>,
        account_id: Option<String>,
    },
}

impl PlannedEnv {
    fn backend(&self) -> &'static str {
        match self.target {
            PlannedTarget::Sqlite { .. } => "sqlite",
            PlannedTarget::D1 { .. } => "d1",
        }
    }

    /// The keys `init` owns: set on new envs and refreshed from wrangler on every run.
    fn owned_keys(&self) -> Vec<(&'static str, String)> {
        match &self.target {
            PlannedTarget::Sqlite {
                wrangler_database_id,
                wrangler_dir,
            } => vec![
                ("wrangler_database_id", wrangler_database_id.clone()),
                ("wrangler_dir", wrangler_dir.clone()),
            ],
            PlannedTarget::D1 {
                database_name,
                database_id,
                account_id,
            } => {
                let mut keys = vec![("database_name", database_name.clone())];
                if let Some(id) = database_id {
                    keys.push(("database_id", id.clone()));
                }
                if let Some(account) = account_id {
                    keys.push(("account_id", account.clone()));
                }
                keys
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Added,
    Updated,
    Unchanged,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Added => "added",
            Status::Updated => "updated",
            Status::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Serialize)]
struct EnvOutcome {
    name: String,
    backend: &'static str,
    status: Status,
    /// Keys added or changed in an existing env.
    changes: Vec<String>,
    protected: bool,
    /// An env of the file served by the bundled simulator (init never adds one).
    simulator: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct ProjectOutcome {
    migrations_dir: String,
    ledger: String,
    ladder: Vec<String>,
    /// `[project]` keys added or changed.
    changes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    path: String,
    wrangler_config: String,
    /// The file did not exist before (with `--dry-run`: would not).
    created: bool,
    dry_run: bool,
    written: bool,
    project: ProjectOutcome,
    environments: Vec<EnvOutcome>,
    /// The resulting file, with `--dry-run` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

pub(crate) fn init(args: &InitArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let output = context.config.clone();
    let output_dir = parent_dir(&output);
    if !output_dir.is_dir() {
        return Err(UserError::new(
            format!("the folder `{}` does not exist", shown(&output_dir)),
            "create it, or pass another `--config PATH` for environments.toml",
        )
        .into());
    }
    let wrangler_path = PathBuf::from(shown(&locate_wrangler_config(
        args.wrangler_config.as_deref(),
        &output_dir,
        context,
    )?));
    let output_dir = fs_err::canonicalize(&output_dir)?;
    let wrangler = wrangler_config::load(&wrangler_path).map_err(|error| match error {
        WranglerConfigError::Syntax { .. } => UserError::new(
            error.to_string(),
            "fix the wrangler config (wrangler itself would refuse it), then run `d1ctl init` again",
        ),
        WranglerConfigError::Read { .. } => UserError::new(
            error.to_string(),
            "pass the wrangler config with `--wrangler-config PATH`",
        ),
    })?;
    let wrangler_dir = fs_err::canonicalize(parent_dir(&wrangler_path))?;
    let wrangler_rel = relative_dir(&output_dir, &wrangler_dir);
    let wrangler_file = join_relative(
        &wrangler_rel,
        &wrangler_path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let drizzle = drizzle_folder(&output_dir, &wrangler_dir, context)?;

    let plan = plan(&wrangler, &wrangler_file, &wrangler_rel, drizzle.as_ref())?;

    let existing = match fs_err::read_to_string(&output) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error.into()),
    };
    if existing.is_some() && !args.force && !args.dry_run {
        return Err(UserError::new(
            format!("`{}` already exists; nothing was written", shown(&output)),
            "run `d1ctl init --dry-run` to see the update, then `d1ctl init --force` to apply it in place \
             (your comments, keys and other envs are kept)",
        )
        .into());
    }
    for warning in &plan.warnings {
        printer.warning(warning);
    }
    let created = existing.is_none();
    let mut document = match &existing {
        Some(text) => {
            Registry::parse(&output, text, &|_| Some(VALIDATION_PLACEHOLDER.to_owned()))
                .with_context(|| {
                    format!(
                        "`{}` must be valid before `d1ctl init` updates it; nothing was written",
                        shown(&output)
                    )
                })?;
            text.parse::<DocumentMut>()
                .with_context(|| format!("`{}` is not valid TOML", shown(&output)))?
        }
        None => DocumentMut::new(),
    };
    let (project, environments) = merge(&mut document, &plan, created, &wrangler_file, printer)?;
    let mut text = document.to_string();
    if !text.ends_with('\n') && existing.as_deref() != Some(text.as_str()) {
        text.push('\n');
    }
    Registry::parse(&output, &text, &|_| Some(VALIDATION_PLACEHOLDER.to_owned())).with_context(
        || {
            format!(
                "d1ctl init produced an invalid `{}`; nothing was written (this is a bug of d1ctl)",
                shown(&output)
            )
        },
    )?;

    let changed = existing.as_deref() != Some(text.as_str());
    let written = changed && !args.dry_run;
    if written {
        write_atomically(&output, &text, existing.is_some())?;
    }
    let report = Report {
        path: shown(&output),
        wrangler_config: shown(&wrangler_path),
        created,
        dry_run: args.dry_run,
        written,
        project,
        environments,
        content: args.dry_run.then(|| text.clone()),
    };
    if printer.is_json() {
        printer.json(&report)?;
    } else {
        if args.dry_run {
            printer.data(&text)?;
        }
        print_summary(context, &report, &plan, changed);
    }
    Ok(ExitStatus::Success)
}

/// A path as the user would type it; `.` for the current folder.
fn shown(path: &Path) -> String {
    let text = display_path(path);
    if text.is_empty() {
        ".".to_owned()
    } else {
        text
    }
}

/// The folder holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `--wrangler-config` (a file, or a folder to search), else the configs beside environments.toml.
fn locate_wrangler_config(
    given: Option<&Path>,
    output_dir: &Path,
    context: &Context,
) -> anyhow::Result<PathBuf> {
    let (dir, explicit) = match given {
        Some(path) if path.is_file() => return Ok(path.to_path_buf()),
        Some(path) if path.is_dir() => (path.to_path_buf(), true),
        Some(path) => {
            return Err(UserError::new(
                format!(
                    "no wrangler config at `{}`; nothing was written",
                    shown(path)
                ),
                "pass the path of your wrangler.toml, wrangler.json or wrangler.jsonc",
            )
            .into());
        }
        None => (output_dir.to_path_buf(), false),
    };
    let found = wrangler_config::find(&dir);
    let Some(first) = found.first() else {
        return Err(UserError::new(
            format!(
                "no wrangler config ({}) in `{}`; nothing was written",
                WRANGLER_CONFIG_NAMES.join(", "),
                shown(&dir)
            ),
            if explicit {
                "pass the path of the wrangler config itself with `--wrangler-config PATH`"
            } else {
                "run `d1ctl init` in your Worker's folder, or pass `--wrangler-config PATH`"
            },
        )
        .into());
    };
    if found.len() > 1 {
        context.printer.warning(&format!(
            "found {}; reading `{}`, the one wrangler prefers",
            found
                .iter()
                .map(|path| format!("`{}`", shown(path)))
                .collect::<Vec<_>>()
                .join(" and "),
            shown(first)
        ));
    }
    Ok(first.clone())
}

/// A drizzle config's migrations folder, relative to environments.toml's folder.
struct DrizzleFolder {
    config: String,
    out: String,
}

/// The drizzle config beside environments.toml, else beside the wrangler config.
fn drizzle_folder(
    output_dir: &Path,
    wrangler_dir: &Path,
    context: &Context,
) -> anyhow::Result<Option<DrizzleFolder>> {
    let mut dirs = vec![output_dir.to_path_buf()];
    if wrangler_dir != output_dir {
        dirs.push(wrangler_dir.to_path_buf());
    }
    let Some(config) = dirs
        .iter()
        .find_map(|dir| wrangler_config::find_drizzle(dir).into_iter().next())
    else {
        return Ok(None);
    };
    let text = fs_err::read_to_string(&config)?;
    let config_rel = relative_dir(output_dir, &parent_dir(&config));
    let name = config
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = match wrangler_config::drizzle_out(&text) {
        DrizzleOut::Literal(out) => out,
        DrizzleOut::Absent => DRIZZLE_DEFAULT_OUT.to_owned(),
        DrizzleOut::NotLiteral => {
            context.printer.warning(&format!(
                "`{}`: `out` is not a plain string, so d1ctl cannot read it; set `migrations_dir` \
                 in environments.toml by hand if it is not the one chosen",
                shown(&config)
            ));
            return Ok(None);
        }
    };
    Ok(Some(DrizzleFolder {
        config: join_relative(&config_rel, &name),
        out: join_relative(&config_rel, &out),
    }))
}

/// Works out the envs and project keys from the wrangler config.
fn plan(
    wrangler: &WranglerConfig,
    wrangler_file: &str,
    wrangler_rel: &str,
    drizzle: Option<&DrizzleFolder>,
) -> Result<Plan, UserError> {
    let mut warnings = Vec::new();
    let with_databases: Vec<_> = wrangler
        .sections
        .iter()
        .filter(|section| !section.databases.is_empty())
        .collect();
    let Some(first_section) = with_databases.first() else {
        return Err(UserError::new(
            format!(
                "`{wrangler_file}` declares no D1 database (`[[d1_databases]]`); nothing was written"
            ),
            "add a `[[d1_databases]]` entry with `binding`, `database_name` and `database_id` \
             (`wrangler d1 create NAME` prints one), then run `d1ctl init` again",
        ));
    };
    for section in &wrangler.sections {
        if section.env.is_some() && section.databases.is_empty() {
            warnings.push(format!(
                "`{wrangler_file}` {} declares no `d1_databases` (wrangler does not inherit them \
                 from the top level); it gets no env",
                section.label()
            ));
        }
    }

    // One database per section: the binding of the first one declared, in every section.
    let primary = first_section.databases[0].label().to_owned();
    let mut chosen: Vec<(&wrangler_config::Section, &D1Database)> = Vec::new();
    for section in &with_databases {
        let database = section
            .databases
            .iter()
            .find(|database| database.label() == primary)
            .unwrap_or(&section.databases[0]);
        if section.databases.len() > 1 {
            warnings.push(format!(
                "`{wrangler_file}` {} declares {} D1 databases ({}); d1ctl manages one migrations \
                 folder per environments.toml, so init used `{}`",
                section.label(),
                section.databases.len(),
                section
                    .databases
                    .iter()
                    .map(|database| format!("`{}`", database.label()))
                    .collect::<Vec<_>>()
                    .join(", "),
                database.label()
            ));
        } else if database.label() != primary {
            warnings.push(format!(
                "`{wrangler_file}` {} binds `{}` where the others bind `{primary}`; init used it",
                section.label(),
                database.label()
            ));
        }
        chosen.push((section, database));
    }

    // Names: each `[env.X]` keeps its own; the top level becomes `dev` below staging/production.
    let mut usable: Vec<(&wrangler_config::Section, &D1Database, Option<String>)> = Vec::new();
    for (section, database) in &chosen {
        match &section.env {
            Some(name) if !is_valid_name(name) || name == RESERVED_NAME => {
                warnings.push(format!(
                    "`{wrangler_file}` {}: `{name}` cannot name a d1ctl env (letters, digits, `-` \
                     and `_`; `{RESERVED_NAME}` is reserved); it gets no env",
                    section.label()
                ));
            }
            name => usable.push((section, database, name.clone())),
        }
    }
    let env_names: Vec<&str> = usable
        .iter()
        .filter_map(|(_, _, name)| name.as_deref())
        .collect();
    let has_upper_rungs = env_names
        .iter()
        .any(|name| matches!(tier_of(name), Tier::Staging | Tier::Production));
    let top_level_name = ["dev", "remote", "default", "top-level"]
        .into_iter()
        .filter(|candidate| *candidate != "dev" || has_upper_rungs)
        .find(|candidate| !env_names.contains(candidate))
        .unwrap_or("top-level")
        .to_owned();
    let local_name = ["local", "wrangler-local", "local-sqlite"]
        .into_iter()
        .find(|candidate| !env_names.contains(candidate) && *candidate != top_level_name)
        .unwrap_or("local-sqlite")
        .to_owned();

    let mut envs = Vec::new();
    // `local`: the file `wrangler dev` and `wrangler d1 ... --local` use, which is the top level's
    // unless only environments declare databases.
    let (local_section, local_database) = chosen[0];
    if let Some(local_id) = local_database.local_name() {
        envs.push(PlannedEnv {
            name: local_name,
            tier: Tier::Local,
            aliases: Vec::new(),
            protected: false,
            comment: format!(
                "wrangler's local state (`wrangler dev`, `wrangler d1 ... --local`) for `{}` of {wrangler_file}{}",
                local_database.label(),
                match &local_section.env {
                    Some(env) => format!(" [env.{env}]"),
                    None => String::new(),
                }
            ),
            target: PlannedTarget::Sqlite {
                wrangler_database_id: local_id.to_owned(),
                wrangler_dir: wrangler_rel.to_owned(),
            },
        });
    }
    for (section, database, env_name) in &usable {
        let name = env_name.clone().unwrap_or_else(|| top_level_name.clone());
        let Some(database_name) = database.database_name.clone().filter(|n| !n.is_empty()) else {
            warnings.push(format!(
                "`{wrangler_file}` {}: `{}` has no `database_name`, which d1ctl checks on every \
                 write; env `{name}` was not created (add the name, then `d1ctl init --force`)",
                section.label(),
                database.label()
            ));
            continue;
        };
        let database_id = database.database_id.clone().filter(|id| !id.is_empty());
        if database_id.is_none() {
            warnings.push(format!(
                "`{wrangler_file}` {}: `{}` has no `database_id`; env `{name}` will read it from \
                 `CLOUDFLARE_DATABASE_ID_{}` or `CLOUDFLARE_DATABASE_ID`",
                section.label(),
                database.label(),
                crate::credentials::env_suffix(&name)
            ));
        }
        let tier = tier_of(&name);
        envs.push(PlannedEnv {
            tier,
            aliases: Vec::new(),
            protected: tier == Tier::Production,
            comment: format!(
                "`{}` of {wrangler_file}{}",
                database.label(),
                match &section.env {
                    Some(env) => format!(" [env.{env}]"),
                    None => " (top level)".to_owned(),
                }
            ),
            target: PlannedTarget::D1 {
                database_name,
                database_id,
                account_id: section.account_id.clone().filter(|id| !id.is_empty()),
            },
            name,
        });
    }
    // A stable sort: envs of one tier keep the wrangler config's order.
    envs.sort_by_key(|env| env.tier);
    if !envs.iter().any(|env| env.name == "prod")
        && let Some(production) = envs.iter_mut().find(|env| env.name == "production")
    {
        production.aliases.push("prod".to_owned());
    }

    // `[project]`: one migrations folder and ledger for every env.
    let dirs = distinct(chosen.iter().map(|(_, db)| {
        join_relative(
            wrangler_rel,
            db.migrations_dir
                .as_deref()
                .unwrap_or(WRANGLER_DEFAULT_MIGRATIONS_DIR),
        )
    }));
    let tables = distinct(chosen.iter().map(|(_, db)| {
        db.migrations_table
            .clone()
            .unwrap_or_else(|| DEFAULT_LEDGER.to_owned())
    }));
    if dirs.len() > 1 {
        warnings.push(format!(
            "`{wrangler_file}` sets different `migrations_dir`s ({}); d1ctl uses one folder, the \
             one of {}",
            quoted(&dirs),
            local_section.label()
        ));
    }
    if tables.len() > 1 {
        warnings.push(format!(
            "`{wrangler_file}` sets different `migrations_table`s ({}); d1ctl uses one ledger \
             name, the one of {}",
            quoted(&tables),
            local_section.label()
        ));
    }
    let patterns: Vec<String> = chosen
        .iter()
        .filter(|(_, db)| db.migrations_pattern.is_some())
        .map(|(section, _)| section.label())
        .collect();
    if !patterns.is_empty() {
        warnings.push(format!(
            "`{wrangler_file}` sets `migrations_pattern` ({}), which d1ctl does not support: it \
             reads the `*.sql` files at the top of `migrations_dir`, or drizzle-kit's \
             `meta/_journal.json`; files only the pattern matches (e.g. drizzle v1's \
             `*/migration.sql`) are not seen",
            patterns.join(", ")
        ));
    }
    let migrations_dir = match (&local_database.migrations_dir, drizzle) {
        (Some(dir), drizzle) => {
            let dir = join_relative(wrangler_rel, dir);
            if let Some(drizzle) = drizzle
                && drizzle.out != dir
            {
                warnings.push(format!(
                    "`{}` writes migrations to `{}` but `{wrangler_file}` reads `{dir}`; d1ctl uses \
                     `{dir}`, as wrangler does",
                    drizzle.config, drizzle.out
                ));
            }
            dir
        }
        (None, Some(drizzle)) => drizzle.out.clone(),
        (None, None) => join_relative(wrangler_rel, WRANGLER_DEFAULT_MIGRATIONS_DIR),
    };
    let ledger = local_database
        .migrations_table
        .clone()
        .filter(|table| !table.is_empty() && table != DEFAULT_LEDGER);
    Ok(Plan {
        migrations_dir,
        ledger,
        envs,
        warnings,
    })
}

fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen
}

fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|value| format!("`{value}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Applies the plan to the document: new envs become `[env.NAME]` tables, envs already there get
/// their wrangler-owned keys refreshed, everything else is left as it is.
fn merge(
    document: &mut DocumentMut,
    plan: &Plan,
    created: bool,
    wrangler_file: &str,
    printer: &crate::cli::printer::Printer,
) -> anyhow::Result<(ProjectOutcome, Vec<EnvOutcome>)> {
    let root = document.as_table_mut();
    let mut project_changes = Vec::new();

    if !root.contains_key("project") {
        let mut project = Table::new();
        if created {
            project.decor_mut().set_prefix(header(plan, wrangler_file));
        } else {
            // First in the file, a blank line above the table that used to open it.
            project.set_position(Some(0));
            project_changes.push("[project]".to_owned());
            if let Some(first) = root
                .get_mut("env")
                .and_then(Item::as_table_mut)
                .and_then(|env| {
                    env.iter_mut()
                        .filter_map(|(_, item)| item.as_table_mut())
                        .min_by_key(|table| table.position())
                })
            {
                let prefix = first
                    .decor()
                    .prefix()
                    .and_then(|prefix| prefix.as_str())
                    .unwrap_or("")
                    .to_owned();
                if !prefix.starts_with('\n') {
                    first.decor_mut().set_prefix(format!("\n{prefix}"));
                }
            }
        }
        root.insert("project", Item::Table(project));
    }
    let project = root
        .get_mut("project")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| {
            UserError::new(
                "`project` in environments.toml is not a table",
                "write it as a `[project]` section",
            )
        })?;
    if set_owned(project, "migrations_dir", &plan.migrations_dir) {
        project_changes.push("migrations_dir".to_owned());
    }
    if let Some(ledger) = &plan.ledger
        && set_owned(project, "ledger", ledger)
    {
        project_changes.push("ledger".to_owned());
    }

    if !root.contains_key("env") {
        let mut env = Table::new();
        env.set_implicit(true);
        root.insert("env", Item::Table(env));
    }
    let Some(env_table) = root.get_mut("env").and_then(Item::as_table_mut) else {
        return Err(UserError::new(
            "`env` in environments.toml is an inline table, which d1ctl init cannot extend",
            "write each environment as an `[env.NAME]` section",
        )
        .into());
    };

    let mut outcomes = Vec::new();
    for planned in &plan.envs {
        let outcome = match find_env(env_table, &planned.name) {
            None => {
                let taken = taken_names(env_table);
                env_table.insert(&planned.name, Item::Table(new_env_table(planned, &taken)));
                EnvOutcome {
                    name: planned.name.clone(),
                    backend: planned.backend(),
                    status: Status::Added,
                    changes: Vec::new(),
                    protected: planned.protected,
                    simulator: false,
                    note: None,
                }
            }
            Some(key) => {
                let table = env_table
                    .get_mut(&key)
                    .and_then(Item::as_table_like_mut)
                    .ok_or_else(|| {
                        UserError::new(
                            format!("`env.{key}` in environments.toml is not a table"),
                            format!("write it as an `[env.{key}]` section"),
                        )
                    })?;
                update_env(table, planned, &key)
            }
        };
        if let Some(note) = &outcome.note {
            printer.warning(note);
        }
        outcomes.push(outcome);
    }

    // The ladder: written whole for a new file; otherwise new envs slot in by tier.
    let added: Vec<&PlannedEnv> = plan
        .envs
        .iter()
        .filter(|env| {
            outcomes
                .iter()
                .any(|o| o.name == env.name && o.status == Status::Added)
        })
        .collect();
    let backends: Vec<(String, Option<String>)> = env_table
        .iter()
        .map(|(name, item)| {
            (
                name.to_owned(),
                item.as_table_like()
                    .and_then(|t| t.get("backend"))
                    .and_then(Item::as_str)
                    .map(str::to_owned),
            )
        })
        .collect();
    let project = root
        .get_mut("project")
        .and_then(Item::as_table_like_mut)
        .context("the `[project]` table went missing")?;
    let has_ladder = project.contains_key("ladder");
    match project.get_mut("ladder").and_then(Item::as_array_mut) {
        Some(ladder) if !added.is_empty() => {
            for env in &added {
                let rank = |entry: &str| {
                    plan.envs
                        .iter()
                        .find(|env| env.name == entry || env.aliases.iter().any(|a| a == entry))
                        .map(|env| env.tier)
                        .or_else(|| {
                            backends
                                .iter()
                                .any(|(name, backend)| {
                                    name == entry && backend.as_deref() == Some("sqlite")
                                })
                                .then_some(Tier::Local)
                        })
                        .unwrap_or_else(|| tier_of(entry))
                };
                let position = ladder
                    .iter()
                    .position(|entry| entry.as_str().is_some_and(|entry| rank(entry) > env.tier))
                    .unwrap_or(ladder.len());
                insert_like_neighbours(ladder, position, &env.name);
            }
            project_changes.push("ladder".to_owned());
        }
        Some(_) => {}
        None if has_ladder => {}
        None => {
            if created {
                let ladder: Array = plan.envs.iter().map(|env| env.name.as_str()).collect();
                project.insert("ladder", toml_edit::value(ladder));
            } else if !added.is_empty() {
                printer.warning(
                    "environments.toml has no `ladder`, so its promotion order is file order; \
                     the new envs were added at the end",
                );
            }
        }
    }
    let ladder = project.get("ladder").and_then(Item::as_array).map_or_else(
        || backends.iter().map(|(name, _)| name.clone()).collect(),
        |ladder| {
            ladder
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        },
    );
    let project = ProjectOutcome {
        migrations_dir: project
            .get("migrations_dir")
            .and_then(Item::as_str)
            .unwrap_or(&plan.migrations_dir)
            .to_owned(),
        ledger: project
            .get("ledger")
            .and_then(Item::as_str)
            .unwrap_or(DEFAULT_LEDGER)
            .to_owned(),
        ladder,
        changes: if created { Vec::new() } else { project_changes },
    };
    Ok((project, outcomes))
}

/// The comment at the top of a new environments.toml.
fn header(plan: &Plan, wrangler_file: &str) -> String {
    let mut text = format!(
        "# d1ctl's environment registry, written by `d1ctl init` from {wrangler_file}.\n\
         # Reference: README.md, section \"environments.toml\". `d1ctl init --force` refreshes the\n\
         # database ids from {wrangler_file} and keeps your own keys, envs and comments.\n"
    );
    let without_account = plan.envs.iter().any(|env| {
        matches!(
            env.target,
            PlannedTarget::D1 {
                account_id: None,
                ..
            }
        )
    });
    if without_account {
        text.push_str(
            "# d1 envs without `account_id` read it from CLOUDFLARE_ACCOUNT_ID (environment, .dev.vars\n\
             # or .env); `d1ctl auth status` shows where each credential comes from.\n",
        );
    }
    text.push('\n');
    text
}

/// The key of the env called `name`, or having it as an alias.
fn find_env(env_table: &Table, name: &str) -> Option<String> {
    if env_table.contains_key(name) {
        return Some(name.to_owned());
    }
    env_table.iter().find_map(|(key, item)| {
        let aliases = item.as_table_like()?.get("aliases")?.as_array()?;
        aliases
            .iter()
            .any(|alias| alias.as_str() == Some(name))
            .then(|| key.to_owned())
    })
}

/// Every env name and alias already in the file.
fn taken_names(env_table: &Table) -> Vec<String> {
    let mut names = Vec::new();
    for (key, item) in env_table {
        names.push(key.to_owned());
        if let Some(aliases) = item
            .as_table_like()
            .and_then(|t| t.get("aliases"))
            .and_then(Item::as_array)
        {
            names.extend(aliases.iter().filter_map(|a| a.as_str().map(str::to_owned)));
        }
    }
    names
}

fn new_env_table(planned: &PlannedEnv, taken: &[String]) -> Table {
    let mut table = Table::new();
    table
        .decor_mut()
        .set_prefix(format!("\n# {}\n", planned.comment));
    table.insert("backend", toml_edit::value(planned.backend()));
    let aliases: Array = planned
        .aliases
        .iter()
        .filter(|alias| !taken.contains(alias))
        .map(String::as_str)
        .collect();
    if !aliases.is_empty() {
        table.insert("aliases", toml_edit::value(aliases));
    }
    if planned.protected {
        table.insert("protected", toml_edit::value(true));
    }
    for (key, value) in planned.owned_keys() {
        table.insert(key, toml_edit::value(value));
    }
    table
}

/// Refreshes the wrangler-owned keys of an env already in the file.
fn update_env(table: &mut dyn TableLike, planned: &PlannedEnv, key: &str) -> EnvOutcome {
    let mut outcome = EnvOutcome {
        name: key.to_owned(),
        backend: planned.backend(),
        status: Status::Unchanged,
        changes: Vec::new(),
        protected: table
            .get("protected")
            .and_then(Item::as_bool)
            .unwrap_or(false),
        simulator: table.get("simulator").and_then(Item::as_bool) == Some(true),
        note: None,
    };
    let backend = table.get("backend").and_then(Item::as_str).unwrap_or("");
    if backend != planned.backend() {
        outcome.note = Some(format!(
            "env `{key}` is a `{backend}` env in environments.toml but {} is a `{}` one; left as it is",
            planned.comment.trim_start_matches("wrangler's "),
            planned.backend()
        ));
        return outcome;
    }
    if planned.backend() == "sqlite" && table.contains_key("path") {
        outcome.note = Some(format!(
            "env `{key}` uses a file of its own (`path`), not wrangler's local state; left as it is"
        ));
        return outcome;
    }
    if table.get("simulator").and_then(Item::as_bool) == Some(true) {
        outcome.note = Some(format!(
            "env `{key}` runs on the bundled simulator; left as it is (delete `simulator = true` \
             and re-run to point it at wrangler's database)"
        ));
        return outcome;
    }
    for (name, value) in planned.owned_keys() {
        if set_owned(table, name, &value) {
            outcome.changes.push(name.to_owned());
        }
    }
    if !outcome.changes.is_empty() {
        outcome.status = Status::Updated;
    }
    outcome
}

/// Sets a string key, keeping the comments around an existing value. A value written with
/// `${VAR}` is the user's choice and stays. Returns whether the file changed.
fn set_owned(table: &mut dyn TableLike, key: &str, value: &str) -> bool {
    match table.get_mut(key) {
        None => {
            table.insert(key, toml_edit::value(value));
            true
        }
        Some(item) => match item.as_value_mut() {
            Some(existing) if existing.as_str() == Some(value) => false,
            Some(existing) if existing.as_str().is_some_and(|text| text.contains("${")) => false,
            Some(existing) => {
                let decor = existing.decor().clone();
                *existing = Value::from(value);
                *existing.decor_mut() = decor;
                true
            }
            None => false,
        },
    }
}

/// Inserts a string into an array, formatted like the values around it (one line or several).
fn insert_like_neighbours(array: &mut Array, index: usize, text: &str) {
    let mut value = Value::from(text);
    let length = array.len();
    if length == 0 {
        array.push(value);
        return;
    }
    let decor_of = |array: &Array, index: usize| {
        array
            .get(index)
            .map(|value| value.decor().clone())
            .unwrap_or_default()
    };
    let multiline = decor_of(array, 0)
        .prefix()
        .and_then(|prefix| prefix.as_str())
        .is_some_and(|prefix| prefix.contains('\n'));
    let inner = || {
        if multiline {
            decor_of(array, 0)
        } else {
            Decor::new(" ", "")
        }
    };
    if index == 0 {
        let first = decor_of(array, 0);
        let second = if length > 1 {
            decor_of(array, 1)
        } else {
            inner()
        };
        if let Some(old_first) = array.get_mut(0) {
            *old_first.decor_mut() = second;
        }
        *value.decor_mut() = first;
    } else {
        let model = if index < length { index } else { length - 1 };
        *value.decor_mut() = if model == 0 {
            inner()
        } else {
            decor_of(array, model)
        };
    }
    array.insert_formatted(index, value);
}

/// Writes through a temporary file beside the target, so an interrupted run leaves the old file.
fn write_atomically(path: &Path, text: &str, replace: bool) -> anyhow::Result<()> {
    let name = path.file_name().map_or_else(
        || "environments.toml".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let temporary = path.with_file_name(format!(".{name}.d1ctl-init.tmp"));
    fs_err::write(&temporary, text)?;
    if replace && let Ok(metadata) = fs_err::metadata(path) {
        fs_err::set_permissions(&temporary, metadata.permissions())?;
    }
    fs_err::rename(&temporary, path)?;
    Ok(())
}

fn print_summary(context: &Context, report: &Report, plan: &Plan, changed: bool) {
    let printer = &context.printer;
    printer.message(&if report.created || changed {
        let verb = match (report.created, report.dry_run) {
            (true, false) => "created",
            (true, true) => "would create",
            (false, false) => "updated",
            (false, true) => "would update",
        };
        let count = if report.created {
            format!(" ({})", plural(report.environments.len(), "environment"))
        } else {
            String::new()
        };
        format!(
            "{verb} `{}` from `{}`{count}",
            report.path, report.wrangler_config
        )
    } else {
        format!(
            "nothing to change in `{}` from `{}`",
            report.path, report.wrangler_config
        )
    });
    let width = report
        .environments
        .iter()
        .map(|env| env.name.len())
        .max()
        .unwrap_or(0);
    for env in &report.environments {
        let mut line = format!(
            "  {:width$}  {:6}  {}",
            env.name,
            env.backend,
            env.status.word()
        );
        if !env.changes.is_empty() {
            line.push_str(&format!(" ({})", env.changes.join(", ")));
        }
        if let Some(planned) = plan.envs.iter().find(|p| p.name == env.name) {
            match &planned.target {
                PlannedTarget::Sqlite {
                    wrangler_database_id,
                    ..
                } if report.created => {
                    line.push_str(&format!(
                        "  wrangler's local state for `{wrangler_database_id}`"
                    ));
                }
                PlannedTarget::D1 { database_name, .. } if report.created => {
                    line.push_str(&format!("  {database_name}"));
                }
                _ => {}
            }
        }
        if env.protected && env.status == Status::Added {
            line.push_str(", protected");
        }
        printer.message(&line);
    }
    if !report.project.changes.is_empty() {
        printer.message(&format!(
            "  [project] updated ({})",
            report.project.changes.join(", ")
        ));
    }
    if report.created {
        printer.message(&format!(
            "migrations: `{}`{}",
            report.project.migrations_dir,
            if report.project.ledger == DEFAULT_LEDGER {
                String::new()
            } else {
                format!(", ledger `{}`", report.project.ledger)
            }
        ));
    }
    printer.message(&format!("ladder: {}", report.project.ladder.join(" → ")));
    if report.dry_run {
        printer.message(if report.created || !changed {
            "dry run: nothing was written"
        } else {
            "dry run: nothing was written; `d1ctl init --force` writes it"
        });
    } else if report.written {
        printer.message("next: `d1ctl status` shows where every env stands");
    }
    let migrations_dir = context
        .config
        .parent()
        .unwrap_or(Path::new(""))
        .join(&report.project.migrations_dir);
    if !migrations_dir.is_dir() {
        printer.message(&format!(
            "note: the migrations folder `{}` does not exist yet; `d1ctl new NAME` creates it",
            shown(&migrations_dir)
        ));
    }
}

/// `to` relative to `from` (both absolute, canonical), with `/` separators; `.` when equal.
fn relative_dir(from: &Path, to: &Path) -> String {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common == 0 {
        // Nothing shared (another drive): only an absolute path can say it.
        return to
            .iter()
            .collect::<PathBuf>()
            .to_string_lossy()
            .replace('\\', "/");
    }
    let mut parts: Vec<String> =
        std::iter::repeat_n("..".to_owned(), from.len() - common).collect();
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// `path` (relative to `base`, itself relative to environments.toml) as a normalised path
/// relative to environments.toml: `join_relative("worker", "./migrations")` is
/// `worker/migrations`. An absolute `path` stays as it is.
fn join_relative(base: &str, path: &str) -> String {
    let path = path.replace('\\', "/");
    if Path::new(&path).is_absolute() {
        return path;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_relativises_paths() {
        assert_eq!(join_relative(".", "./migrations"), "migrations");
        assert_eq!(
            join_relative("worker", "./migrations/"),
            "worker/migrations"
        );
        assert_eq!(join_relative("worker", "../db"), "db");
        assert_eq!(join_relative("..", "../x"), "../../x");
        assert_eq!(join_relative(".", "."), ".");
        assert_eq!(
            relative_dir(Path::new("/a/b"), Path::new("/a/b/c/d")),
            "c/d"
        );
        assert_eq!(relative_dir(Path::new("/a/b"), Path::new("/a/x")), "../x");
        assert_eq!(relative_dir(Path::new("/a/b"), Path::new("/a/b")), ".");
    }

    #[test]
    fn ranks_names_into_tiers() {
        assert_eq!(tier_of("Production"), Tier::Production);
        assert_eq!(tier_of("qa"), Tier::Staging);
        assert_eq!(tier_of("preview"), Tier::Development);
        assert_eq!(tier_of("alice"), Tier::Other);
        assert!(Tier::Development < Tier::Other && Tier::Other < Tier::Staging);
    }

    #[test]
    fn inserts_into_arrays_in_their_style() {
        let mut document: DocumentMut =
            "a = [\"x\", \"z\"]\nb = [\n  \"x\",\n  \"z\",\n]\nc = [\"x\"]\n"
                .parse()
                .unwrap();
        for key in ["a", "b"] {
            let array = document[key].as_array_mut().unwrap();
            insert_like_neighbours(array, 1, "y");
            insert_like_neighbours(array, 0, "w");
            insert_like_neighbours(array, 4, "end");
        }
        insert_like_neighbours(document["c"].as_array_mut().unwrap(), 1, "y");
        assert_eq!(
            document.to_string(),
            "a = [\"w\", \"x\", \"y\", \"z\", \"end\"]\nb = [\n  \"w\",\n  \"x\",\n  \"y\",\n  \"z\",\n  \"end\",\n]\nc = [\"x\", \"y\"]\n"
        );
    }
}
