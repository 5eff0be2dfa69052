//! Run-once data steps: backfills and one-off fixes declared as `[[step]]` in
//! environments.toml, each tied to the migration it needs and recorded per env in
//! `_d1ctl_steps` so it never runs twice.
//!
//! `load` reads the steps' files and checks them against the migration set; `judge` says, for
//! one env, what each step is there (waiting, pending, done, …) and whether a promotion may
//! run it. Running one is `core::write::step`, through the write engine like every write.

pub mod estimate;
pub mod ledger;
pub mod plan;

use std::path::Path;

use serde::Serialize;

use crate::core::ledger::MigrationStatus;
use crate::core::migrations::{MigrationSet, sha256_hex};
use crate::core::registry::{ConfigError, Registry, StepAction, StepSpec};
use crate::core::sql::{self, SqlStatement};

pub use estimate::Chunk;
pub use ledger::{STEPS_TABLE, StepRecord};

/// A declared step with its file read and checked.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    /// The migration (its name in the set) the step needs.
    pub after: String,
    pub body: Body,
    /// SHA-256 of what runs: the SQL file with LF line endings, or the command's text.
    pub checksum: String,
    /// Where the step is declared (`environments.toml:12:1`).
    pub declared_at: String,
    /// A `COUNT(*)` of the rows the step will touch, where one can be derived.
    pub estimate: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Body {
    /// Every statement in one atomic request.
    Sql { statements: Vec<SqlStatement> },
    /// One statement with a `LIMIT`, one atomic request per repetition, until it changes no row.
    Chunked {
        statement: SqlStatement,
        chunk: Chunk,
    },
    /// `sh -c COMMAND` in the folder of environments.toml.
    Command { command: String, needs_token: bool },
}

impl Step {
    /// `sql`, `chunked` or `command`, as `_d1ctl_steps` records it.
    pub fn kind(&self) -> &'static str {
        match self.body {
            Body::Sql { .. } => "sql",
            Body::Chunked { .. } => "chunked",
            Body::Command { .. } => "command",
        }
    }
}

/// Reads and checks every `[[step]]` of `registry` against the migration set. Every mistake
/// names the step, where it is declared and its file.
pub fn load(registry: &Registry, set: &MigrationSet) -> Result<Vec<Step>, ConfigError> {
    registry
        .steps
        .iter()
        .map(|spec| load_one(spec, set, &registry.root))
        .collect()
}

fn load_one(spec: &StepSpec, set: &MigrationSet, root: &Path) -> Result<Step, ConfigError> {
    let mistake = |message: String, hint: String| ConfigError {
        location: spec.declared_at.clone(),
        message: format!("step `{}`: {message}", spec.name),
        hint,
    };
    let after = resolve_after(set, &spec.after).ok_or_else(|| {
        let last = set.migrations.last().map_or_else(
            || "the folder has none yet".to_owned(),
            |m| format!("the last one is `{}`", m.name),
        );
        mistake(
            format!(
                "`after` names `{}`, which is not a migration of the folder",
                spec.after
            ),
            format!("give the file name of the migration the step needs ({last})"),
        )
    })?;
    let (body, checksum) = match &spec.action {
        StepAction::Command {
            command,
            needs_token,
        } => (
            Body::Command {
                command: command.clone(),
                needs_token: *needs_token,
            },
            sha256_hex(command.as_bytes()),
        ),
        StepAction::Sql { path, chunked } => {
            let shown = path
                .strip_prefix(root)
                .unwrap_or(path)
                .display()
                .to_string();
            let text = fs_err::read_to_string(path).map_err(|error| {
                mistake(
                    format!("could not read `{shown}`: {}", io_reason(&error)),
                    "create the file, or fix `sql` (a path relative to environments.toml)"
                        .to_owned(),
                )
            })?;
            let text = sql::normalize_line_endings(&text);
            let statements = sql::split_statements(&text, 1).map_err(|unterminated| {
                mistake(
                    format!("`{shown}` has an {unterminated}"),
                    format!(
                        "close the {} that opens on line {}",
                        unterminated.opening, unterminated.line
                    ),
                )
            })?;
            if statements.is_empty() {
                return Err(mistake(
                    format!("`{shown}` holds no SQL statement"),
                    "write the step's SQL into it".to_owned(),
                ));
            }
            if let Some(control) = statements
                .iter()
                .find(|s| sql::is_transaction_control(&s.sql))
            {
                return Err(mistake(
                    format!(
                        "`{shown}` line {}: `{}` controls a transaction; D1 refuses it",
                        control.line,
                        sql::leading_keywords(&control.sql, 2).join(" ")
                    ),
                    "remove it: d1ctl runs the step's statements as one atomic request (or each batch of a chunked step as one)".to_owned(),
                ));
            }
            let body = if *chunked {
                chunked_body(&shown, statements)
                    .map_err(|(message, hint)| mistake(message, hint))?
            } else {
                Body::Sql { statements }
            };
            (body, sha256_hex(text.as_bytes()))
        }
    };
    let estimate = match &body {
        Body::Sql { statements } => sum_of_counts(statements),
        Body::Chunked { chunk, .. } => chunk.remaining.clone(),
        Body::Command { .. } => None,
    };
    Ok(Step {
        name: spec.name.clone(),
        after,
        body,
        checksum,
        declared_at: spec.declared_at.clone(),
        estimate,
    })
}

fn chunked_body(shown: &str, statements: Vec<SqlStatement>) -> Result<Body, (String, String)> {
    let [statement] = <[SqlStatement; 1]>::try_from(statements).map_err(|statements| {
        (
            format!(
                "`{shown}` holds {} statements; a chunked step is one statement, repeated",
                statements.len()
            ),
            "keep the one statement with a `LIMIT` in the file, or drop `chunked = true` to run the file as one atomic unit".to_owned(),
        )
    })?;
    let hint = "write one INSERT, UPDATE or DELETE whose rows come through a `LIMIT n` and that skips rows already done, e.g. `UPDATE t SET c = … WHERE id IN (SELECT id FROM t WHERE c IS NULL LIMIT 500)`: d1ctl repeats it until it changes no row".to_owned();
    let chunk = estimate::chunk(&statement.sql).map_err(|why| {
        let what = match why {
            estimate::NotChunkable::NoLimit => "has no `LIMIT`".to_owned(),
            estimate::NotChunkable::LimitNotANumber(value) => {
                format!("has `LIMIT {value}`, not `LIMIT` and a positive whole number")
            }
            estimate::NotChunkable::NotAWrite => {
                "is not an INSERT, UPDATE, DELETE or REPLACE".to_owned()
            }
        };
        (
            format!(
                "the statement of `{shown}` (line {}) {what}",
                statement.line
            ),
            hint.clone(),
        )
    })?;
    Ok(Body::Chunked { statement, chunk })
}

/// The statements' counts added up, as one query, when every writing statement has one.
fn sum_of_counts(statements: &[SqlStatement]) -> Option<String> {
    let counts: Vec<String> = statements
        .iter()
        .filter(|s| writes_rows(&s.sql))
        .map(|s| estimate::count_query(&s.sql).map(|count| format!("({count})")))
        .collect::<Option<_>>()?;
    if counts.is_empty() {
        return None;
    }
    Some(format!("SELECT {}", counts.join(" + ")))
}

/// Whether `changes()` after the statement counts its rows (INSERT, UPDATE, DELETE, REPLACE).
pub fn writes_rows(statement: &str) -> bool {
    matches!(
        sql::leading_keywords(statement, 1)
            .first()
            .map(String::as_str),
        Some("INSERT" | "UPDATE" | "DELETE" | "REPLACE")
    )
}

/// The migration `after` names: its name in the set, with or without `.sql`, or a drizzle
/// folder's name.
fn resolve_after(set: &MigrationSet, after: &str) -> Option<String> {
    [
        after.to_owned(),
        format!("{after}.sql"),
        format!("{after}/migration.sql"),
    ]
    .into_iter()
    .find(|name| set.get(name).is_some())
}

fn io_reason(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::NotFound {
        "no such file".to_owned()
    } else {
        error.kind().to_string()
    }
}

/// What a step is on one env.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// The env lacks the migration the step needs.
    Waiting,
    /// The migration is there and the step never ran.
    Pending,
    /// A chunked step stopped between batches: every batch committed with its count, and the
    /// statement skips rows already done, so the next run continues where it stopped.
    Partial,
    /// A command or SQL run that started and did not finish (a crash, Ctrl-C, a failing
    /// exit): it may have done part of its work, so it is never run again on its own.
    Interrupted,
    Done,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Waiting => "waiting",
            StepState::Pending => "pending",
            StepState::Partial => "partial",
            StepState::Interrupted => "interrupted",
            StepState::Done => "done",
        }
    }
}

/// One step on one env, as read from it.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub name: String,
    pub after: String,
    pub kind: &'static str,
    pub state: StepState,
    /// The step's file (or command) changed since it ran here.
    pub edited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<StepRecord>,
}

/// What each step is on an env: `statuses` are the env's migrations, `records` its
/// `_d1ctl_steps`. `will_have` names migrations a plan is about to apply (they count as there).
pub fn statuses(
    steps: &[Step],
    migrations: &[MigrationStatus],
    records: &[StepRecord],
    will_have: &[String],
) -> Vec<StepStatus> {
    steps
        .iter()
        .map(|step| {
            let record = records.iter().find(|r| r.name == step.name).cloned();
            let has_migration = will_have.contains(&step.after)
                || migrations
                    .iter()
                    .any(|m| m.name == step.after && m.is_applied());
            let state = match &record {
                Some(record) if record.finished() => StepState::Done,
                Some(record) if record.kind == "chunked" && step.kind() == "chunked" => {
                    StepState::Partial
                }
                Some(_) => StepState::Interrupted,
                None if has_migration => StepState::Pending,
                None => StepState::Waiting,
            };
            StepStatus {
                name: step.name.clone(),
                after: step.after.clone(),
                kind: step.kind(),
                state,
                edited: record.as_ref().is_some_and(|r| r.checksum != step.checksum),
                record,
            }
        })
        .collect()
}

/// How a run treats a step that already ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rerun {
    /// Run only what never ran (and continue a partial chunked step).
    #[default]
    No,
    /// Also run an interrupted step again (`--rerun-interrupted`, after the user checked).
    Interrupted,
    /// Also run a finished step again (`--force`).
    Finished,
}

/// Whether a step runs on an env now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Run,
    /// Finished here already.
    Done,
    /// Not yet: the env lacks the migration, or the rung below has not finished the step.
    Wait {
        why: String,
    },
    /// The user must act: an edit, an interrupted run.
    Blocked {
        why: String,
        hint: String,
    },
}

/// Judges one step on `env` from its status there and (for a rung) its source's record.
/// `source` is `None` for an env whose source is the migrations folder.
pub fn decide(
    status: &StepStatus,
    env: &str,
    source: Option<(&str, Option<&StepRecord>)>,
    current_checksum: &str,
    rerun: Rerun,
) -> Decision {
    let run_again = format!("d1ctl step run {} --env {env}", status.name);
    if status.edited {
        let record = status.record.as_ref();
        return Decision::Blocked {
            why: format!(
                "step `{}` was edited after it ran on `{env}` (ran {}, file now {})",
                status.name,
                short(record.map_or("", |r| r.checksum.as_str())),
                short(current_checksum)
            ),
            hint: format!(
                "restore the step as it ran, or give the new version a new `name` so it runs as a step of its own; `--force` runs the edited one again on `{env}`"
            ),
        }
        .unless_forced(rerun);
    }
    match status.state {
        StepState::Done if rerun == Rerun::Finished => return Decision::Run,
        StepState::Done => return Decision::Done,
        StepState::Waiting => {
            return Decision::Wait {
                why: format!("`{env}` does not have `{}` yet", status.after),
            };
        }
        StepState::Interrupted if rerun == Rerun::No => {
            return Decision::Blocked {
                why: format!(
                    "step `{}` started on `{env}` and did not finish{}",
                    status.name,
                    status
                        .record
                        .as_ref()
                        .and_then(|r| r.ended.as_ref())
                        .map(|how| format!(" ({how})"))
                        .unwrap_or_default()
                ),
                hint: format!(
                    "check what it did to `{env}`, then run it again with `{run_again} --rerun-interrupted`"
                ),
            };
        }
        StepState::Interrupted | StepState::Pending | StepState::Partial => {}
    }
    if let Some((source, record)) = source {
        match record {
            Some(record) if record.finished() && record.checksum == current_checksum => {}
            Some(record) if record.finished() => {
                return Decision::Blocked {
                    why: format!(
                        "`{source}` ran another version of step `{}` ({}; the file is now {})",
                        status.name,
                        short(&record.checksum),
                        short(current_checksum)
                    ),
                    hint: format!(
                        "run this version on `{source}` first (`d1ctl step run {} --env {source} --force`), or restore the step as it ran there",
                        status.name
                    ),
                };
            }
            _ => {
                return Decision::Wait {
                    why: format!("`{source}` has not finished it"),
                };
            }
        }
    }
    Decision::Run
}

impl Decision {
    fn unless_forced(self, rerun: Rerun) -> Decision {
        if rerun == Rerun::Finished {
            Decision::Run
        } else {
            self
        }
    }
}

fn short(checksum: &str) -> String {
    format!("sha256 {}…", &checksum[..checksum.len().min(12)])
}

#[cfg(test)]
mod tests;
