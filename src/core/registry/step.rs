//! `[[step]]` tables: run-once data steps (backfills, one-off fixes) that follow a migration.
//!
//! ```toml
//! [[step]]
//! name = "backfill-metrics"
//! after = "0012_agent_metrics.sql"
//! sql = "steps/backfill_metrics.sql"
//! chunked = true        # one statement with a LIMIT, repeated until it changes no row
//!
//! [[step]]
//! name = "reindex-search"
//! after = "0014_search.sql"
//! command = "pnpm tsx scripts/reindex.ts"
//! needs_token = true    # CLOUDFLARE_API_TOKEN is set for the command
//! ```
//!
//! Which migration `after` names is checked where the migration set is loaded
//! (`core::steps::load`), since the registry reads no folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::Mistake;

/// A `[[step]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    name: Option<Spanned<String>>,
    after: Option<Spanned<String>>,
    sql: Option<Spanned<String>>,
    chunked: Option<Spanned<bool>>,
    command: Option<Spanned<String>>,
    needs_token: Option<Spanned<bool>>,
}

/// A data step, as environments.toml declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    /// Unique and stable: it is the step's key in every env's `_d1ctl_steps`.
    pub name: String,
    /// The migration the step needs, as written (`0012_agent_metrics.sql`).
    pub after: String,
    pub action: StepAction,
    /// Where the `[[step]]` table is: `path:line:column`.
    pub declared_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// A file of SQL: run as one atomic unit, or (`chunked`) one statement with a `LIMIT`
    /// repeated until it changes no row.
    Sql { path: PathBuf, chunked: bool },
    /// A shell command run with `sh -c` in the folder of environments.toml.
    Command { command: String, needs_token: bool },
}

/// Reads one `[[step]]` table; `taken` holds the names of the steps before it.
pub(super) fn parse(
    raw: &Spanned<RawStep>,
    root: &Path,
    taken: &[StepSpec],
    location: &dyn Fn(usize) -> String,
) -> Result<StepSpec, Mistake> {
    let step = raw.get_ref();
    let mistake = |span: std::ops::Range<usize>, message: String, hint: &str| Mistake {
        span: Some(span),
        message,
        hint: hint.to_owned(),
    };
    let Some(name) = &step.name else {
        return Err(mistake(
            raw.span(),
            "a `[[step]]` has no `name`".to_owned(),
            "add `name = \"backfill-metrics\"`: a unique, stable name, the step's key in every env's ledger",
        ));
    };
    let label = name.get_ref();
    if !super::is_valid_name(label) {
        return Err(mistake(
            name.span(),
            format!("`{label}` is not a valid step name"),
            "use letters, digits, `-` and `_`, starting with a letter or digit",
        ));
    }
    if let Some(first) = taken.iter().find(|s| &s.name == label) {
        return Err(mistake(
            name.span(),
            format!(
                "step `{label}` is declared twice (first at {})",
                first.declared_at
            ),
            "step names are unique: each is recorded once per env",
        ));
    }
    let after = match &step.after {
        Some(after) if !after.get_ref().trim().is_empty() => after.get_ref().trim().to_owned(),
        Some(after) => {
            return Err(mistake(
                after.span(),
                format!("step `{label}`: `after` is empty"),
                "name the migration the step needs, e.g. `after = \"0012_agent_metrics.sql\"`",
            ));
        }
        None => {
            return Err(mistake(
                name.span(),
                format!("step `{label}` has no `after`"),
                "name the migration the step needs, e.g. `after = \"0012_agent_metrics.sql\"`: the step runs on an env only once it has that migration",
            ));
        }
    };
    let action = match (&step.sql, &step.command) {
        (Some(sql), None) => {
            if let Some(needs_token) = &step.needs_token {
                return Err(mistake(
                    needs_token.span(),
                    format!("step `{label}`: `needs_token` applies to a `command` step"),
                    "an SQL step is sent by d1ctl itself; delete `needs_token`",
                ));
            }
            if sql.get_ref().trim().is_empty() {
                return Err(mistake(
                    sql.span(),
                    format!("step `{label}`: `sql` is empty"),
                    "give the path of the step's SQL file, relative to environments.toml",
                ));
            }
            StepAction::Sql {
                path: super::join_normal(root, sql.get_ref()),
                chunked: step.chunked.as_ref().is_some_and(|c| *c.get_ref()),
            }
        }
        (None, Some(command)) => {
            if let Some(chunked) = &step.chunked {
                return Err(mistake(
                    chunked.span(),
                    format!("step `{label}`: `chunked` applies to an `sql` step"),
                    "a command step batches its own work; delete `chunked`",
                ));
            }
            if command.get_ref().trim().is_empty() {
                return Err(mistake(
                    command.span(),
                    format!("step `{label}`: `command` is empty"),
                    "give the shell command, e.g. `command = \"pnpm tsx scripts/backfill.ts\"`",
                ));
            }
            StepAction::Command {
                command: command.get_ref().clone(),
                needs_token: step.needs_token.as_ref().is_some_and(|n| *n.get_ref()),
            }
        }
        (Some(_), Some(command)) => {
            return Err(mistake(
                command.span(),
                format!("step `{label}` has both `sql` and `command`"),
                "a step is either an SQL file (`sql`) or a shell command (`command`); split it into two steps",
            ));
        }
        (None, None) => {
            return Err(mistake(
                name.span(),
                format!("step `{label}` has neither `sql` nor `command`"),
                "add `sql = \"steps/NAME.sql\"` (run by d1ctl) or `command = \"…\"` (run with `sh -c`)",
            ));
        }
    };
    Ok(StepSpec {
        name: label.clone(),
        after,
        action,
        declared_at: location(raw.span().start),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::core::registry::{Registry, StepAction};

    const ENVS: &str = "[env.local]\nbackend = \"sqlite\"\npath = \"local.sqlite\"\n";

    fn parse(steps: &str) -> Result<Registry, crate::core::registry::ConfigError> {
        Registry::parse(
            Path::new("project/environments.toml"),
            &format!("{ENVS}{steps}"),
            &|_| None,
        )
    }

    #[test]
    fn reads_sql_and_command_steps_in_file_order() {
        let registry = parse(
            "\n[[step]]\nname = \"backfill\"\nafter = \"0002_b.sql\"\nsql = \"steps/./backfill.sql\"\nchunked = true\n\n[[step]]\nname = \"reindex\"\nafter = \"0003_c.sql\"\ncommand = \"true\"\nneeds_token = true\n",
        )
        .unwrap();
        let names: Vec<&str> = registry.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["backfill", "reindex"]);
        assert_eq!(
            registry.steps[0].action,
            StepAction::Sql {
                path: Path::new("project/steps/backfill.sql").to_path_buf(),
                chunked: true
            }
        );
        assert_eq!(
            registry.steps[0].declared_at,
            "project/environments.toml:5:1"
        );
        assert_eq!(
            registry.steps[1].action,
            StepAction::Command {
                command: "true".to_owned(),
                needs_token: true
            }
        );
    }

    #[test]
    fn names_the_line_of_each_mistake() {
        let cases = [
            (
                "[[step]]\nafter = \"a\"\nsql = \"x.sql\"\n",
                "has no `name`",
                4,
            ),
            (
                "[[step]]\nname = \"a\"\nafter = \"x\"\nsql = \"x.sql\"\n[[step]]\nname = \"a\"\nafter = \"x\"\nsql = \"y.sql\"\n",
                "declared twice",
                9,
            ),
            (
                "[[step]]\nname = \"a\"\nsql = \"x.sql\"\n",
                "has no `after`",
                5,
            ),
            ("[[step]]\nname = \"a\"\nafter = \"x\"\n", "neither", 5),
            (
                "[[step]]\nname = \"a\"\nafter = \"x\"\nsql = \"x.sql\"\ncommand = \"true\"\n",
                "both `sql` and `command`",
                8,
            ),
            (
                "[[step]]\nname = \"a\"\nafter = \"x\"\ncommand = \"true\"\nchunked = true\n",
                "`chunked` applies",
                8,
            ),
            (
                "[[step]]\nname = \"a\"\nafter = \"x\"\nsql = \"x.sql\"\nneeds_token = true\n",
                "`needs_token` applies",
                8,
            ),
            (
                "[[step]]\nname = \"a b\"\nafter = \"x\"\nsql = \"x.sql\"\n",
                "not a valid step name",
                5,
            ),
            (
                "[[step]]\nname = \"a\"\nafter = \"x\"\nsqll = \"x.sql\"\n",
                "unknown field",
                7,
            ),
        ];
        for (steps, expected, line) in cases {
            let error = parse(steps).unwrap_err();
            assert!(
                error.message.contains(expected),
                "{steps}: {}",
                error.message
            );
            assert!(
                error
                    .location
                    .starts_with(&format!("project/environments.toml:{line}:")),
                "{steps}: {}",
                error.location
            );
            assert!(!error.hint.is_empty());
        }
    }
}
