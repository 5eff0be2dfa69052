//! The plan: which envs, names, tiers and `[project]` keys the wrangler config describes.

use super::{InitError, join_relative};
use crate::core::registry::{DEFAULT_LEDGER, RESERVED_NAME};
use crate::core::wrangler_config::{
    self, D1Database, WRANGLER_DEFAULT_MIGRATIONS_DIR, WranglerConfig,
};

/// Names that make an env the last rung, `protected`.
const PRODUCTION_NAMES: [&str; 4] = ["production", "prod", "live", "main"];
const STAGING_NAMES: [&str; 3] = ["staging", "stage", "qa"];
const DEVELOPMENT_NAMES: [&str; 3] = ["dev", "development", "preview"];

/// Where an env goes on the ladder: lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Local,
    Development,
    Other,
    Staging,
    Production,
}

pub(super) fn tier_of(name: &str) -> Tier {
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
pub struct Plan {
    pub migrations_dir: String,
    /// `Some` only when wrangler's `migrations_table` is not the default.
    pub ledger: Option<String>,
    /// In ladder order.
    pub envs: Vec<PlannedEnv>,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct PlannedEnv {
    pub name: String,
    pub tier: Tier,
    pub aliases: Vec<String>,
    pub protected: bool,
    /// The comment above a new `[env.NAME]` table: where it comes from.
    pub comment: String,
    pub target: PlannedTarget,
}

#[derive(Debug)]
pub enum PlannedTarget {
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
    pub fn backend(&self) -> &'static str {
        match self.target {
            PlannedTarget::Sqlite { .. } => "sqlite",
            PlannedTarget::D1 { .. } => "d1",
        }
    }

    /// The keys `init` owns: set on new envs and refreshed from wrangler on every run.
    pub(super) fn owned_keys(&self) -> Vec<(&'static str, String)> {
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

/// A drizzle config's migrations folder, relative to environments.toml's folder.
pub(super) struct DrizzleFolder {
    pub(super) config: String,
    pub(super) out: String,
}

/// Works out the envs and project keys from the wrangler config.
pub(super) fn plan(
    wrangler: &WranglerConfig,
    wrangler_file: &str,
    wrangler_rel: &str,
    drizzle: Option<&DrizzleFolder>,
) -> Result<Plan, InitError> {
    let mut warnings = Vec::new();
    let with_databases: Vec<_> = wrangler
        .sections
        .iter()
        .filter(|section| !section.databases.is_empty())
        .collect();
    let Some(first_section) = with_databases.first() else {
        return Err(InitError::user(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_names_into_tiers() {
        assert_eq!(tier_of("Production"), Tier::Production);
        assert_eq!(tier_of("qa"), Tier::Staging);
        assert_eq!(tier_of("preview"), Tier::Development);
        assert_eq!(tier_of("alice"), Tier::Other);
        assert!(Tier::Development < Tier::Other && Tier::Other < Tier::Staging);
    }
}
