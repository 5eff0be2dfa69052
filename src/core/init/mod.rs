//! What `d1ctl init` does: write `environments.toml` from the wrangler config (and drizzle's).
//!
//! Every `[[d1_databases]]` section of the wrangler config becomes an env: the top level's, and
//! each `[env.X]`'s (wrangler does not inherit D1 bindings into environments). A `local` env is
//! bound to wrangler's own local state file. A re-run with `--force` edits the file in place with
//! `toml_edit`, so the user's comments, keys and envs stay as they are.
//!
//! `plan` works out the envs from the wrangler config; `merge` edits the document. The command
//! only prints: warnings reach it through [`InitReporter`] as they are found, the outcome as
//! [`Initialized`].

mod merge;
mod plan;

use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use toml_edit::DocumentMut;

use self::plan::DrizzleFolder;
pub use self::plan::{Plan, PlannedEnv, PlannedTarget, Tier};
use crate::core::registry::{ConfigError, Registry};
use crate::core::wrangler_config::{
    self, DRIZZLE_DEFAULT_OUT, DrizzleOut, WRANGLER_CONFIG_NAMES, WranglerConfigError,
};

/// What `${VAR}` reads while the result is validated: the file is checked for its structure, and
/// a variable unset in this shell must not make a correct file look broken.
const VALIDATION_PLACEHOLDER: &str = "https://d1ctl-init.invalid";

/// What happened to one env.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Added,
    Updated,
    Unchanged,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Added => "added",
            Status::Updated => "updated",
            Status::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EnvOutcome {
    pub name: String,
    pub backend: &'static str,
    pub status: Status,
    /// Keys added or changed in an existing env.
    pub changes: Vec<String>,
    pub protected: bool,
    /// An env of the file served by the bundled simulator (init never adds one).
    pub simulator: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProjectOutcome {
    pub migrations_dir: String,
    pub ledger: String,
    pub ladder: Vec<String>,
    /// `[project]` keys added or changed.
    pub changes: Vec<String>,
}

/// What `init` did; `--format json` prints it as it is.
#[derive(Debug, Serialize)]
pub struct Report {
    pub path: String,
    pub wrangler_config: String,
    /// The file did not exist before (with `--dry-run`: would not).
    pub created: bool,
    pub dry_run: bool,
    pub written: bool,
    pub project: ProjectOutcome,
    pub environments: Vec<EnvOutcome>,
    /// The resulting file, with `--dry-run` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// What `d1ctl init` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct InitRequest<'a> {
    /// Where environments.toml goes.
    pub config: &'a Path,
    /// `--wrangler-config`: a file, or a folder to search.
    pub wrangler_config: Option<&'a Path>,
    /// Update an existing environments.toml in place.
    pub force: bool,
    /// Work the result out, write nothing.
    pub dry_run: bool,
}

/// How `init` tells the user what it finds on the way.
pub trait InitReporter {
    /// Something that does not stop `init`, reported when it is found.
    fn warning(&self, message: &str);
    /// `path` as the user would type it, for messages.
    fn path(&self, path: &Path) -> String;
}

/// What `init` did, or with `dry_run` would do.
#[derive(Debug)]
pub struct Initialized {
    pub report: Report,
    pub plan: Plan,
    /// The resulting text differs from the file's (or there was no file).
    pub changed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A mistake in the user's files or arguments; nothing was written.
    #[error("{message}")]
    User { message: String, hint: String },
    #[error("`{path}` must be valid before `d1ctl init` updates it; nothing was written")]
    InvalidExisting {
        path: String,
        #[source]
        source: ConfigError,
    },
    #[error("`{path}` is not valid TOML")]
    NotToml {
        path: String,
        #[source]
        source: toml_edit::TomlError,
    },
    #[error(
        "d1ctl init produced an invalid `{path}`; nothing was written (this is a bug of d1ctl)"
    )]
    InvalidResult {
        path: String,
        #[source]
        source: ConfigError,
    },
    #[error("the `[project]` table went missing")]
    ProjectMissing,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl InitError {
    fn user(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::User {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Writes (or with `dry_run` works out) environments.toml from the wrangler config.
pub fn run(
    request: &InitRequest<'_>,
    reporter: &dyn InitReporter,
) -> Result<Initialized, InitError> {
    let shown = |path: &Path| shown(reporter, path);
    let output = request.config.to_path_buf();
    let output_dir = parent_dir(&output);
    if !output_dir.is_dir() {
        return Err(InitError::user(
            format!("the folder `{}` does not exist", shown(&output_dir)),
            "create it, or pass another `--config PATH` for environments.toml",
        ));
    }
    let wrangler_path = PathBuf::from(shown(&locate_wrangler_config(
        request.wrangler_config,
        &output_dir,
        reporter,
    )?));
    let output_dir = fs_err::canonicalize(&output_dir)?;
    let wrangler = wrangler_config::load(&wrangler_path).map_err(|error| match error {
        WranglerConfigError::Syntax { .. } => InitError::user(
            error.to_string(),
            "fix the wrangler config (wrangler itself would refuse it), then run `d1ctl init` again",
        ),
        WranglerConfigError::Read { .. } => InitError::user(
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
    let drizzle = drizzle_folder(&output_dir, &wrangler_dir, reporter)?;

    let plan = plan::plan(&wrangler, &wrangler_file, &wrangler_rel, drizzle.as_ref())?;

    let existing = match fs_err::read_to_string(&output) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(error.into()),
    };
    if existing.is_some() && !request.force && !request.dry_run {
        return Err(InitError::user(
            format!("`{}` already exists; nothing was written", shown(&output)),
            "run `d1ctl init --dry-run` to see the update, then `d1ctl init --force` to apply it in place \
             (your comments, keys and other envs are kept)",
        ));
    }
    for warning in &plan.warnings {
        reporter.warning(warning);
    }
    let created = existing.is_none();
    let mut document = match &existing {
        Some(text) => {
            Registry::parse_before_init(&output, text, &|_| {
                Some(VALIDATION_PLACEHOLDER.to_owned())
            })
            .map_err(|source| InitError::InvalidExisting {
                path: shown(&output),
                source,
            })?;
            text.parse::<DocumentMut>()
                .map_err(|source| InitError::NotToml {
                    path: shown(&output),
                    source,
                })?
        }
        None => DocumentMut::new(),
    };
    let (project, environments) =
        merge::merge(&mut document, &plan, created, &wrangler_file, reporter)?;
    let mut text = document.to_string();
    if !text.ends_with('\n') && existing.as_deref() != Some(text.as_str()) {
        text.push('\n');
    }
    Registry::parse(&output, &text, &|_| Some(VALIDATION_PLACEHOLDER.to_owned())).map_err(
        |source| InitError::InvalidResult {
            path: shown(&output),
            source,
        },
    )?;

    let changed = existing.as_deref() != Some(text.as_str());
    let written = changed && !request.dry_run;
    if written {
        write_atomically(&output, &text, existing.is_some())?;
    }
    let report = Report {
        path: shown(&output),
        wrangler_config: shown(&wrangler_path),
        created,
        dry_run: request.dry_run,
        written,
        project,
        environments,
        content: request.dry_run.then_some(text),
    };
    Ok(Initialized {
        report,
        plan,
        changed,
    })
}

/// A path as the user would type it; `.` for the current folder.
fn shown(reporter: &dyn InitReporter, path: &Path) -> String {
    let text = reporter.path(path);
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
    reporter: &dyn InitReporter,
) -> Result<PathBuf, InitError> {
    let (dir, explicit) = match given {
        Some(path) if path.is_file() => return Ok(path.to_path_buf()),
        Some(path) if path.is_dir() => (path.to_path_buf(), true),
        Some(path) => {
            return Err(InitError::user(
                format!(
                    "no wrangler config at `{}`; nothing was written",
                    shown(reporter, path)
                ),
                "pass the path of your wrangler.toml, wrangler.json or wrangler.jsonc",
            ));
        }
        None => (output_dir.to_path_buf(), false),
    };
    let found = wrangler_config::find(&dir);
    let Some(first) = found.first() else {
        return Err(InitError::user(
            format!(
                "no wrangler config ({}) in `{}`; nothing was written",
                WRANGLER_CONFIG_NAMES.join(", "),
                shown(reporter, &dir)
            ),
            if explicit {
                "pass the path of the wrangler config itself with `--wrangler-config PATH`"
            } else {
                "run `d1ctl init` in your Worker's folder, or pass `--wrangler-config PATH`"
            },
        ));
    };
    if found.len() > 1 {
        reporter.warning(&format!(
            "found {}; reading `{}`, the one wrangler prefers",
            found
                .iter()
                .map(|path| format!("`{}`", shown(reporter, path)))
                .collect::<Vec<_>>()
                .join(" and "),
            shown(reporter, first)
        ));
    }
    Ok(first.clone())
}

/// The drizzle config beside environments.toml, else beside the wrangler config.
fn drizzle_folder(
    output_dir: &Path,
    wrangler_dir: &Path,
    reporter: &dyn InitReporter,
) -> Result<Option<DrizzleFolder>, InitError> {
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
            reporter.warning(&format!(
                "`{}`: `out` is not a plain string, so d1ctl cannot read it; set `migrations_dir` \
                 in environments.toml by hand if it is not the one chosen",
                shown(reporter, &config)
            ));
            return Ok(None);
        }
    };
    Ok(Some(DrizzleFolder {
        config: join_relative(&config_rel, &name),
        out: join_relative(&config_rel, &out),
    }))
}

/// Writes through a temporary file beside the target, so an interrupted run leaves the old file.
fn write_atomically(path: &Path, text: &str, replace: bool) -> std::io::Result<()> {
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
pub(super) fn join_relative(base: &str, path: &str) -> String {
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
}
