//! Dotenv files (`.dev.vars.<env>`, `.dev.vars`, `.env`) read into maps, never into the process
//! environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::CredentialError;

/// One dotenv file beside `environments.toml`.
#[derive(Debug)]
pub(super) struct DotenvFile {
    pub(super) path: PathBuf,
    pub(super) state: FileState,
}

#[derive(Debug)]
pub(super) enum FileState {
    /// The file does not exist.
    Absent,
    /// The file's variables; the first definition of a name wins, as with dotenvy.
    Loaded(HashMap<String, String>),
    /// The file exists but cannot be read or parsed.
    Broken(CredentialError),
}

impl DotenvFile {
    /// Reads `path`; a missing file is [`FileState::Absent`], not an error.
    pub(super) fn load(path: PathBuf) -> Self {
        let state = match read(&path) {
            Ok(Some(variables)) => FileState::Loaded(variables),
            Ok(None) => FileState::Absent,
            Err(error) => FileState::Broken(error),
        };
        Self { path, state }
    }

    /// The trimmed, non-empty value of `name`, if the file defines it.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        match &self.state {
            FileState::Loaded(variables) => variables
                .get(name)
                .map(|value| value.trim())
                .filter(|value| !value.is_empty()),
            FileState::Absent | FileState::Broken(_) => None,
        }
    }
}

/// The dotenv files for `env` in `config_dir`, most specific first.
pub(super) fn file_paths(config_dir: &Path, env: &str) -> [PathBuf; 3] {
    [
        config_dir.join(format!(".dev.vars.{env}")),
        config_dir.join(".dev.vars"),
        config_dir.join(".env"),
    ]
}

fn read(path: &Path) -> Result<Option<HashMap<String, String>>, CredentialError> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(error) if error.not_found() => return Ok(None),
        Err(error) => return Err(bad_file(path, &error)),
    };
    let mut variables = HashMap::new();
    for item in iter {
        let (name, value) = item.map_err(|error| bad_file(path, &error))?;
        // `from_path_iter` keeps a UTF-8 byte order mark in the first name.
        let name = name.trim_start_matches('\u{feff}').to_owned();
        variables.entry(name).or_insert(value);
    }
    Ok(Some(variables))
}

/// Turns a dotenvy error into [`CredentialError::BadFile`] without quoting the offending line,
/// which dotenvy's own message does and which may hold a secret.
fn bad_file(path: &Path, error: &dotenvy::Error) -> CredentialError {
    match error {
        dotenvy::Error::LineParse(text, index) => {
            let line = locate_line(path, text);
            let column = text
                .get(..*index)
                .filter(|before| !before.contains('\n'))
                .map(|before| before.chars().count() + 1);
            let message = match column {
                Some(column) => format!(
                    "invalid dotenv syntax at column {column} (the line is not shown, it may hold a secret)"
                ),
                None => "invalid dotenv syntax, such as an unclosed quote (the line is not shown, it may hold a secret)"
                    .to_owned(),
            };
            CredentialError::BadFile {
                path: path.to_owned(),
                line,
                message,
            }
        }
        dotenvy::Error::Io(io) => CredentialError::BadFile {
            path: path.to_owned(),
            line: None,
            message: io.to_string(),
        },
        // `EnvVar` (and any future variant) carries no file content.
        other => CredentialError::BadFile {
            path: path.to_owned(),
            line: None,
            message: other.to_string(),
        },
    }
}

/// The 1-based number of the first line of `path` where `text` (a logical line as dotenvy reports
/// it, possibly spanning several physical lines) starts.
fn locate_line(path: &Path, text: &str) -> Option<usize> {
    let content = fs_err::read_to_string(path).ok()?;
    if text.is_empty() {
        return None;
    }
    let mut offset = 0;
    for (index, line) in content.split_inclusive('\n').enumerate() {
        if content[offset..].starts_with(text) {
            return Some(index + 1);
        }
        offset += line.len();
    }
    None
}

/// The 1-based line of `path` that assigns `name` (`NAME=…` or `export NAME=…`), if any.
pub(super) fn line_of_assignment(path: &Path, name: &str) -> Option<usize> {
    let content = fs_err::read_to_string(path).ok()?;
    content
        .lines()
        .position(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            line.strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|index| index + 1)
}
