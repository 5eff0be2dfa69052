//! The migration set: a wrangler `migrations/` folder or a drizzle-kit 0.x folder, ordered
//! exactly as the tool that wrote it orders it.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::core::sql::{self, SqlStatement};

/// Which tool's folder layout the migration set follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `*.sql` files applied by `wrangler d1 migrations apply`.
    Wrangler,
    /// drizzle-kit 0.x output: `meta/_journal.json` + `NNNN_tag.sql`.
    Drizzle,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Wrangler => "wrangler",
            Layout::Drizzle => "drizzle",
        })
    }
}

/// The journal entry of a drizzle migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrizzleEntry {
    pub idx: i64,
    pub tag: String,
    /// Milliseconds at generate time; drizzle's migrator records it as `created_at`.
    pub when: i64,
}

#[derive(Debug, Clone)]
pub struct Migration {
    /// The name every ledger records: the file name, e.g. `0001_init.sql`.
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 hex of the file's bytes (equals drizzle's `hash`).
    pub sha256: String,
    /// SHA-256 hex after removing a BOM and converting CRLF to LF.
    pub sha256_lf: String,
    pub size: usize,
    pub statements: Vec<SqlStatement>,
    pub drizzle: Option<DrizzleEntry>,
}

#[derive(Debug, Clone)]
pub struct MigrationSet {
    pub layout: Layout,
    pub dir: PathBuf,
    pub migrations: Vec<Migration>,
    /// Things a user would want to know that do not stop the set from being used.
    pub warnings: Vec<String>,
    /// Files of the folder that look like migrations but are not loaded, in name order.
    pub skipped: Vec<SkippedFile>,
}

/// A file beside the migrations that is not one: `0004_up.SQL`, `0005_x.sql.bak`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub name: String,
    /// Set when the name looks like a migration misnamed (a typo) rather than one put aside:
    /// why, and what to rename it to.
    pub typo: Option<String>,
}

impl MigrationSet {
    pub fn get(&self, name: &str) -> Option<&Migration> {
        self.migrations.iter().find(|m| m.name == name)
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.migrations.iter().position(|m| m.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migrations folder `{}` does not exist", dir.display())]
    MissingDir { dir: PathBuf },
    #[error("could not read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("migration `{}` is not valid UTF-8 (first bad byte at offset {offset})", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("migration `{}` has an {unterminated}", path.display())]
    Unterminated {
        path: PathBuf,
        unterminated: sql::Unterminated,
    },
    #[error("migration `{}` is empty", path.display())]
    Empty { path: PathBuf },
    #[error("drizzle journal `{}` is not valid: {message}", path.display())]
    BadJournal { path: PathBuf, message: String },
    #[error("drizzle journal `{}` lists `{tag}` (idx {idx}) but `{}` does not exist", journal.display(), file.display())]
    JournalFileMissing {
        journal: PathBuf,
        tag: String,
        idx: i64,
        file: PathBuf,
    },
    #[error("drizzle journal `{}` lists `{tag}` twice", journal.display())]
    JournalDuplicate { journal: PathBuf, tag: String },
}

impl MigrationError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            MigrationError::MissingDir { .. } => {
                "create the folder, or set `migrations_dir` under `[project]` in environments.toml".to_owned()
            }
            MigrationError::Io { .. } => return None,
            MigrationError::NotUtf8 { .. } => {
                "save the file as UTF-8; D1 and wrangler read migrations as UTF-8 text".to_owned()
            }
            MigrationError::Unterminated { unterminated, .. } => format!(
                "close the {} that opens on line {}: as written, SQLite reads the rest of the file into it",
                unterminated.opening, unterminated.line
            ),
            MigrationError::Empty { .. } => {
                "write the migration's SQL into it, or delete the file".to_owned()
            }
            MigrationError::BadJournal { .. } => {
                "regenerate it with `drizzle-kit generate`, or restore it from version control"
                    .to_owned()
            }
            MigrationError::JournalFileMissing { .. } => {
                "restore the file, or remove its entry from meta/_journal.json with `drizzle-kit drop`"
                    .to_owned()
            }
            MigrationError::JournalDuplicate { .. } => {
                "each journal entry must name its own file; remove the duplicate entry".to_owned()
            }
        })
    }
}

/// Detects the layout (unless given) and loads every migration of `dir`.
pub fn load(dir: &Path, layout: Option<Layout>) -> Result<MigrationSet, MigrationError> {
    if !dir.is_dir() {
        return Err(MigrationError::MissingDir {
            dir: dir.to_path_buf(),
        });
    }
    let layout = layout.unwrap_or_else(|| {
        if journal_path(dir).is_file() {
            Layout::Drizzle
        } else {
            Layout::Wrangler
        }
    });
    match layout {
        Layout::Wrangler => load_wrangler(dir),
        Layout::Drizzle => load_drizzle(dir),
    }
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join("meta").join("_journal.json")
}

fn load_wrangler(dir: &Path) -> Result<MigrationSet, MigrationError> {
    let mut names = sql_file_names(dir)?;
    names.sort_by(|a, b| compare_migration_paths(a, b));
    let mut warnings = Vec::new();
    for pair in names.windows(2) {
        let (first, second) = (leading_number(&pair[0]), leading_number(&pair[1]));
        if first.is_some() && first == second {
            warnings.push(format!(
                "`{}` and `{}` share the number {}; they apply in name order, as wrangler applies them",
                pair[0],
                pair[1],
                first.unwrap_or_default()
            ));
        }
    }
    for name in names.iter().filter(|name| leading_number(name).is_none()) {
        warnings.push(format!(
            "`{name}` has no leading number; it applies after the numbered migrations"
        ));
    }
    let migrations = names
        .iter()
        .map(|name| read_migration(dir, name, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MigrationSet {
        layout: Layout::Wrangler,
        dir: dir.to_path_buf(),
        migrations,
        warnings,
        skipped: skipped_files(dir)?,
    })
}

#[derive(Deserialize)]
struct Journal {
    #[serde(default)]
    dialect: Option<String>,
    entries: Vec<JournalEntry>,
}

#[derive(Deserialize)]
struct JournalEntry {
    idx: i64,
    when: i64,
    tag: String,
}

fn load_drizzle(dir: &Path) -> Result<MigrationSet, MigrationError> {
    let journal_file = journal_path(dir);
    let text = fs_err::read_to_string(&journal_file).map_err(|source| MigrationError::Io {
        path: journal_file.clone(),
        source,
    })?;
    let journal: Journal =
        serde_json::from_str(&text).map_err(|error| MigrationError::BadJournal {
            path: journal_file.clone(),
            message: error.to_string(),
        })?;
    let mut warnings = Vec::new();
    if let Some(dialect) = journal.dialect.as_deref()
        && !matches!(dialect, "sqlite" | "turso")
    {
        warnings.push(format!(
            "the drizzle journal's dialect is `{dialect}`; D1 runs SQLite, expect failures"
        ));
    }
    let mut migrations: Vec<Migration> = Vec::with_capacity(journal.entries.len());
    let mut previous_when: Option<i64> = None;
    for entry in &journal.entries {
        let name = format!("{}.sql", entry.tag);
        if migrations.iter().any(|m| m.name == name) {
            return Err(MigrationError::JournalDuplicate {
                journal: journal_file,
                tag: entry.tag.clone(),
            });
        }
        let file = dir.join(&name);
        if !file.is_file() {
            return Err(MigrationError::JournalFileMissing {
                journal: journal_file,
                tag: entry.tag.clone(),
                idx: entry.idx,
                file,
            });
        }
        if let Some(previous) = previous_when
            && entry.when <= previous
        {
            warnings.push(format!(
                "journal entry `{}` has `when` {} not after the previous entry's {previous}; drizzle's own migrator would skip it, d1ctl applies it",
                entry.tag, entry.when
            ));
        }
        previous_when = Some(entry.when);
        migrations.push(read_migration(
            dir,
            &name,
            Some(DrizzleEntry {
                idx: entry.idx,
                tag: entry.tag.clone(),
                when: entry.when,
            }),
        )?);
    }
    for name in sql_file_names(dir)? {
        if !migrations.iter().any(|m| m.name == name) {
            warnings.push(format!(
                "`{name}` is not in meta/_journal.json; drizzle ignores it and so does d1ctl"
            ));
        }
    }
    Ok(MigrationSet {
        layout: Layout::Drizzle,
        dir: dir.to_path_buf(),
        migrations,
        warnings,
        skipped: skipped_files(dir)?,
    })
}

/// File names of the folder's `*.sql` files (top level, no dot-files), as wrangler's default
/// pattern `${migrations_dir}/*.sql` matches them.
fn sql_file_names(dir: &Path) -> Result<Vec<String>, MigrationError> {
    let io_error = |source| MigrationError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // wrangler's glob `*.sql` is case-sensitive: `X.SQL` is not a migration there either.
        #[expect(
            clippy::case_sensitive_file_extension_comparisons,
            reason = "matches wrangler"
        )]
        let is_sql = name.ends_with(".sql");
        if name.starts_with('.') || !is_sql {
            continue;
        }
        if entry.file_type().map_err(io_error)?.is_file() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Files of the folder (top level, no dot-files) that look like migrations — a leading number,
/// or `.sql` in the name in any case — but that `*.sql` does not match.
fn skipped_files(dir: &Path) -> Result<Vec<SkippedFile>, MigrationError> {
    let io_error = |source| MigrationError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut skipped = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !entry.file_type().map_err(io_error)?.is_file() {
            continue;
        }
        if let Some(file) = skipped_file(&name) {
            skipped.push(file);
        }
    }
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(skipped)
}

/// Whether `name` is a look-alike that is not loaded, and whether it looks like a typo.
fn skipped_file(name: &str) -> Option<SkippedFile> {
    #[expect(
        clippy::case_sensitive_file_extension_comparisons,
        reason = "the case-sensitive match is what wrangler loads"
    )]
    if name.ends_with(".sql") {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let numbered = leading_number(name).is_some();
    #[expect(
        clippy::case_sensitive_file_extension_comparisons,
        reason = "`lower` is already lower-cased: this is the case-insensitive match"
    )]
    let wrong_case = lower.ends_with(".sql");
    let typo = if wrong_case {
        let stem = &name[..name.len() - ".sql".len()];
        Some(format!(
            "its extension is not lower-case `.sql`, which is all wrangler and d1ctl read; rename it `{stem}.sql` if it is a migration"
        ))
    } else if lower.contains(".sql") {
        // `0005_x.sql.bak`, `0005_x.sql~`: put aside on purpose, most likely.
        None
    } else if numbered && !name.contains('.') {
        Some(format!(
            "it has a migration number but no `.sql` extension; rename it `{name}.sql` if it is a migration"
        ))
    } else if numbered {
        // `0006_x.txt`, `0006_x.md`: listed as skipped; a near miss of `.sql` is a typo.
        let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
        matches!(
            extension.to_ascii_lowercase().as_str(),
            "sq" | "sqll" | "slq" | "qsl" | "sl" | "ql"
        )
        .then(|| {
            format!(
                "it has a migration number but the extension `.{extension}`; rename it `{stem}.sql` if it is a migration"
            )
        })
    } else {
        return None;
    };
    Some(SkippedFile {
        name: name.to_owned(),
        typo,
    })
}

fn read_migration(
    dir: &Path,
    name: &str,
    drizzle: Option<DrizzleEntry>,
) -> Result<Migration, MigrationError> {
    let path = dir.join(name);
    let bytes = fs_err::read(&path).map_err(|source| MigrationError::Io {
        path: path.clone(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(MigrationError::Empty { path });
    }
    let text = std::str::from_utf8(&bytes).map_err(|error| MigrationError::NotUtf8 {
        path: path.clone(),
        offset: error.valid_up_to(),
    })?;
    // Statements are slices of the file as it is; only the checksum reads the LF copy.
    let statements = if drizzle.is_some() {
        sql::split_drizzle_statements(text)
    } else {
        sql::split_statements(text, 1)
    }
    .map_err(|unterminated| MigrationError::Unterminated {
        path: path.clone(),
        unterminated,
    })?;
    Ok(Migration {
        name: name.to_owned(),
        sha256: sha256_hex(&bytes),
        sha256_lf: sha256_hex(sql::normalize_line_endings(text).as_bytes()),
        size: bytes.len(),
        path,
        statements,
        drizzle,
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The number wrangler reads from a name: JavaScript `parseInt(name.split("_")[0], 10)`.
pub fn leading_number(name: &str) -> Option<f64> {
    let head = name.split('_').next().unwrap_or_default();
    let head = head.trim_start_matches(|c: char| c.is_whitespace());
    let (negative, digits) = match head.as_bytes().first() {
        Some(b'-') => (true, &head[1..]),
        Some(b'+') => (false, &head[1..]),
        _ => (false, head),
    };
    let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    // Parsed as a double, like JavaScript: huge numbers lose precision the same way.
    let value: f64 = digits.parse().ok()?;
    Some(if negative { -value } else { value })
}

/// wrangler's `compareMigrationPaths`: per `/`-separated segment, numbered before unnumbered,
/// numbers numerically, otherwise UTF-16 code-unit order; a shorter path first when the shared
/// segments are equal.
pub fn compare_migration_paths(left: &str, right: &str) -> Ordering {
    let mut left = left.split('/');
    let mut right = right.split('/');
    loop {
        match (left.next(), right.next()) {
            (Some(first), Some(second)) => {
                let by_text = || first.encode_utf16().cmp(second.encode_utf16());
                let ordering = match (leading_number(first), leading_number(second)) {
                    (Some(m), Some(n)) => match m.partial_cmp(&n) {
                        Some(Ordering::Equal) | None => by_text(),
                        Some(ordering) => ordering,
                    },
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => by_text(),
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
        }
    }
}

/// The file name `d1ctl new` creates: wrangler's `pad4(max + 1)_<name with spaces as _>.sql`.
pub fn next_migration_name(existing: &[Migration], message: &str) -> String {
    let max = existing
        .iter()
        .filter_map(|m| leading_number(&m.name))
        .filter(|n| n.is_finite())
        .fold(0.0_f64, f64::max);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "migration numbers are small non-negative integers"
    )]
    let next = (max + 1.0) as u64;
    format!("{next:04}_{}.sql", message.replace(' ', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        names.sort_by(|a, b| compare_migration_paths(a, b));
        names
    }

    #[test]
    fn orders_numerically_then_by_name() {
        assert_eq!(
            sorted(&["10_c.sql", "init.sql", "0002_x.sql", "9_b.sql", "1_a.sql"]),
            ["1_a.sql", "0002_x.sql", "9_b.sql", "10_c.sql", "init.sql"]
        );
        assert_eq!(
            sorted(&["0018_retrieval.sql", "0018_add_usage.sql", "0017_x.sql"]),
            ["0017_x.sql", "0018_add_usage.sql", "0018_retrieval.sql"]
        );
    }

    #[test]
    fn parses_numbers_like_javascript() {
        assert_eq!(leading_number("0001_a.sql"), Some(1.0));
        assert_eq!(leading_number("12ab_x.sql"), Some(12.0));
        assert_eq!(leading_number("1.sql"), Some(1.0));
        assert_eq!(leading_number("init.sql"), None);
        assert_eq!(leading_number("-3_x.sql"), Some(-3.0));
    }

    #[test]
    fn unnumbered_names_order_by_utf16_code_units() {
        // U+1F600 sorts after U+FF5E in UTF-8 byte order but before it in UTF-16 code units
        // (its first surrogate is 0xD83D), which is the order wrangler uses.
        assert_eq!(
            sorted(&["\u{FF5E}.sql", "\u{1F600}.sql"]),
            ["\u{1F600}.sql", "\u{FF5E}.sql"]
        );
    }

    #[test]
    fn names_the_next_migration_like_wrangler() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("0007_x.sql"), "SELECT 1;").unwrap();
        let set = load(dir.path(), None).unwrap();
        assert_eq!(
            next_migration_name(&set.migrations, "add users"),
            "0008_add_users.sql"
        );
        assert_eq!(next_migration_name(&[], "init"), "0001_init.sql");
    }
}
