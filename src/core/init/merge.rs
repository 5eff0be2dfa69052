//! Merging the plan into environments.toml with `toml_edit`: new envs are added, the keys
//! `init` owns are refreshed, and the user's comments, keys and envs stay as they are.

use toml_edit::{Array, Decor, DocumentMut, Item, Table, TableLike, Value};

use super::plan::{Plan, PlannedEnv, PlannedTarget, Tier, tier_of};
use super::{EnvOutcome, InitError, InitReporter, ProjectOutcome, Status};
use crate::core::registry::DEFAULT_LEDGER;

/// Applies the plan to the document: new envs become `[env.NAME]` tables, envs already there get
/// their wrangler-owned keys refreshed, everything else is left as it is.
pub(super) fn merge(
    document: &mut DocumentMut,
    plan: &Plan,
    created: bool,
    wrangler_file: &str,
    reporter: &dyn InitReporter,
) -> Result<(ProjectOutcome, Vec<EnvOutcome>), InitError> {
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
            InitError::user(
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
        return Err(InitError::user(
            "`env` in environments.toml is an inline table, which d1ctl init cannot extend",
            "write each environment as an `[env.NAME]` section",
        ));
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
                        InitError::user(
                            format!("`env.{key}` in environments.toml is not a table"),
                            format!("write it as an `[env.{key}]` section"),
                        )
                    })?;
                update_env(table, planned, &key)
            }
        };
        if let Some(note) = &outcome.note {
            reporter.warning(note);
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
        .ok_or(InitError::ProjectMissing)?;
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
                reporter.warning(
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

#[cfg(test)]
mod tests {
    use super::*;

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
