//! Rehearsals: a promotion's pending migrations applied to a copy of the target's data, with
//! D1's semantics, so what they do to rows is known before anything is written to the target.
//!
//! The copy is a temp file under `.d1ctl/tmp`: `VACUUM INTO` of a local target (one read
//! transaction, so it is consistent), or D1's export of a remote one loaded statement by
//! statement. The migrations run on a connection set up like every d1ctl connection (foreign keys
//! always on, as on D1), each as one atomic unit (or all as one), stopping at the first failure.
//! Rows and non-null values are counted per table before and after (`core::rows`, the measure of
//! loss the lint shadow and the guard share), and foreign keys are checked after.

mod compare;
pub mod record;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, BackendKind, Statement};
use crate::clock::iso8601_now;
use crate::core::export::{ExportError, ExportReporter, Purpose, SchemaObject, Source, SourceKind};
use crate::core::migrations::Migration;
use crate::core::promote::Gate;
use crate::core::rows::{self, Counts, Loss};
use crate::core::temp::TempFile;
use crate::d1::authorizer::D1Rules;
use crate::d1::dump::DumpOptions;
use crate::local::dump::{LoadError, load, open_read_only};

/// Progress of a rehearsal, implemented by the terminal layer (the export's own progress comes
/// through the supertrait).
pub trait RehearsalReporter: ExportReporter {
    /// The copy of `env` starts; `size_bytes` is the database's size as its host reports it.
    fn on_copy_start(&self, _env: &str, _kind: BackendKind, _size_bytes: Option<u64>) {}
    fn on_copy_done(&self, _copy: &DataCopy) {}
    fn on_migration_start(&self, _name: &str) {}
    fn on_migration_done(&self, _migration: &Rehearsed) {}
}

/// What to rehearse, and on a copy of what.
pub struct Request<'a> {
    /// The target, opened for copying.
    pub source: &'a Source<'a>,
    /// The target's objects as already read (the D1 export refusal is checked on them).
    pub objects: &'a [SchemaObject],
    /// The target's size as its host reports it.
    pub size_bytes: Option<u64>,
    /// The target has no tables at all: the copy is an empty database, nothing is exported.
    pub known_empty: bool,
    /// The rung the migrations come from (the promotion's source).
    pub rung_below: &'a str,
    pub pending: &'a [&'a Migration],
    pub all_in_one: bool,
    /// Tables never counted (the ledgers).
    pub ignore: &'a [&'a str],
    /// Where the copy (and a D1 dump) are made; both are removed at the end.
    pub tmp_dir: &'a Path,
}

/// The result of a rehearsal: what `rehearse --format json` prints and what is recorded under
/// `.d1ctl/rehearsals/<env>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rehearsal {
    pub environment: String,
    pub backend: BackendKind,
    /// Served by d1ctl's bundled simulator, not Cloudflare (absent in older records).
    #[serde(default)]
    pub simulator: bool,
    pub database: String,
    /// The rung the pending migrations come from.
    pub source: String,
    pub rehearsed_at: String,
    pub all_in_one: bool,
    /// The pending set, in order, with what happened to each.
    pub migrations: Vec<Rehearsed>,
    pub copy: DataCopy,
    /// Every table before or after, by name.
    pub tables: Vec<TableDelta>,
    /// Tables kept by name that ended with fewer rows or non-null values.
    pub losses: Vec<Loss>,
    pub foreign_keys: ForeignKeys,
    pub failure: Option<Failure>,
    pub outcome: Outcome,
    pub passed: bool,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    /// A migration failed on the copy (the first failure is `failure`).
    Failed,
    RowsLost,
    ForeignKeyViolations,
}

/// One pending migration: its checksum (what makes a record stale) and what it did on the copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rehearsed {
    pub name: String,
    pub sha256: String,
    pub statements: usize,
    pub outcome: MigrationOutcome,
    /// The time of its unit (with `--all-in-one`, every migration shows the unit's time).
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationOutcome {
    Applied,
    Failed,
    /// Its all-in-one unit failed on a later migration.
    RolledBack,
    NotAttempted,
}

/// How the copy was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCopy {
    /// `vacuum_into` (a local file), `export` (D1's dump, loaded) or `empty` (no tables).
    pub method: String,
    /// The copy's size; for `export`, the dump's.
    pub bytes: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDelta {
    pub table: String,
    /// `null` when the table did not exist before.
    pub rows_before: Option<i64>,
    /// `null` when the table no longer exists.
    pub rows_after: Option<i64>,
    /// Columns kept by name that ended with fewer non-null values.
    pub lost_values: Vec<ColumnDelta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDelta {
    pub column: String,
    pub before: i64,
    pub after: i64,
}

/// `PRAGMA foreign_key_check` of the copy, before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKeys {
    /// Rows violating a foreign key in the copy before any migration (as the target holds them).
    pub before: i64,
    pub after: i64,
    /// Per child table and parent, the violations after, when more than before.
    pub new_violations: Vec<Violation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub table: String,
    pub parent: String,
    pub rows: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub migration: String,
    /// 1-based statement of the migration; `null` when the commit itself failed.
    pub statement: Option<usize>,
    pub line: Option<usize>,
    pub message: String,
    pub not_attempted: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RehearsalError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("could not copy `{env}` to `{path}`")]
    Copy {
        env: String,
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("could not load the dump of `{env}` into the copy `{path}`")]
    Load {
        env: String,
        path: String,
        #[source]
        source: LoadError,
    },
    #[error("could not work on the copy `{path}`: {message}")]
    Work { path: String, message: String },
    #[error("could not write the rehearsal record `{path}`")]
    Record {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl RehearsalError {
    pub fn hint(&self) -> Option<String> {
        match self {
            RehearsalError::Export(error) => error.hint(),
            RehearsalError::Copy { .. }
            | RehearsalError::Load { .. }
            | RehearsalError::Work { .. } => Some(
                "the copy needs as much free disk space under `.d1ctl/tmp` as the database takes"
                    .to_owned(),
            ),
            RehearsalError::Record { .. } => {
                Some("check that `.d1ctl/rehearsals` is writable".to_owned())
            }
        }
    }
}

impl Rehearsal {
    /// The `rehearsal` gate of `promote --rehearse`.
    pub fn gate(&self) -> Gate {
        Gate {
            name: "rehearsal",
            passed: self.passed,
            detail: self.summary(),
        }
    }

    /// One line for a gate, a checklist or a message.
    pub fn summary(&self) -> String {
        let copy = format!("a copy of `{}`", self.environment);
        match self.outcome {
            Outcome::Passed => format!(
                "{} rehearsed on {copy}: no rows lost",
                count(self.migrations.len(), "migration")
            ),
            Outcome::RowsLost => format!(
                "rows lost on {copy}: {}",
                self.losses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Outcome::Failed => match &self.failure {
                Some(failure) => format!("on {copy}, {}", failure.describe()),
                None => format!("a migration failed on {copy}"),
            },
            Outcome::ForeignKeyViolations => format!(
                "on {copy}, rows violate foreign keys after the migrations: {}",
                self.foreign_keys
                    .new_violations
                    .iter()
                    .map(|v| format!("`{}` → `{}` ({} rows)", v.table, v.parent, v.rows))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl Failure {
    /// `` `0005_x.sql` failed at statement 2 (line 4): message ``
    pub fn describe(&self) -> String {
        let place = match (self.statement, self.line) {
            (Some(statement), Some(line)) => format!(" at statement {statement} (line {line})"),
            (Some(statement), None) => format!(" at statement {statement}"),
            _ => " when committing".to_owned(),
        };
        format!("`{}` failed{place}: {}", self.migration, self.message)
    }
}

/// `1 migration`, `2 migrations`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// Copies the target, applies the pending migrations to the copy and compares. Nothing is
/// written to the target: a local file is only read, a D1 database only read and exported.
pub async fn rehearse(
    request: &Request<'_>,
    reporter: &dyn RehearsalReporter,
) -> Result<Rehearsal, RehearsalError> {
    let started = Instant::now();
    let rehearsed_at = iso8601_now();
    let env = &request.source.env.name;
    let copy_file = TempFile::new(request.tmp_dir, &format!("rehearse-{env}"), "sqlite");
    reporter.on_copy_start(env, request.source.kind(), request.size_bytes);
    let copy = make_copy(request, copy_file.path(), reporter).await?;
    reporter.on_copy_done(&copy);

    let work_error = |message: String| RehearsalError::Work {
        path: copy_file.path().display().to_string(),
        message,
    };
    let applied = tokio::task::block_in_place(|| {
        let mut connection =
            crate::local::open(copy_file.path()).map_err(|e| work_error(e.to_string()))?;
        // A throwaway copy needs no durability; its rollback journal stays on disk, so a large
        // rebuild does not need memory.
        connection
            .pragma_update(None, "synchronous", "OFF")
            .map_err(|e| work_error(e.to_string()))?;
        // D1's rules, whatever the env's `d1_rules`: a rehearsal says what D1 would do.
        let rules = D1Rules::install(&mut connection).map_err(|e| work_error(e.to_string()))?;
        let result = apply_and_compare(&mut connection, &rules, request, reporter);
        // Closing is best effort: the file is removed next.
        let _ = connection.close();
        result.map_err(work_error)
    })?;
    drop(copy_file);

    let Applied {
        migrations,
        before,
        after,
        fk_before,
        fk_after,
        failure,
    } = applied;
    let losses = rows::losses(&before, &after);
    let tables = compare::table_deltas(&before, &after, &losses);
    let foreign_keys = compare::foreign_keys(&fk_before, &fk_after);
    let outcome = if failure.is_some() {
        Outcome::Failed
    } else if !losses.is_empty() {
        Outcome::RowsLost
    } else if !foreign_keys.new_violations.is_empty() {
        Outcome::ForeignKeyViolations
    } else {
        Outcome::Passed
    };
    Ok(Rehearsal {
        environment: env.clone(),
        backend: request.source.kind(),
        simulator: request.source.env.is_simulated(),
        database: request.source.label.clone(),
        source: request.rung_below.to_owned(),
        rehearsed_at,
        all_in_one: request.all_in_one,
        migrations,
        copy,
        tables,
        losses,
        foreign_keys,
        failure,
        passed: outcome == Outcome::Passed,
        outcome,
        duration_ms: millis(started.elapsed()),
    })
}

/// Makes the copy at `path`: `VACUUM INTO` of a local file, D1's export loaded statement by
/// statement, or an empty database.
async fn make_copy(
    request: &Request<'_>,
    path: &Path,
    reporter: &dyn RehearsalReporter,
) -> Result<DataCopy, RehearsalError> {
    let started = Instant::now();
    let source = request.source;
    let env = &source.env.name;
    let copy_error = |source: rusqlite::Error| RehearsalError::Copy {
        env: env.clone(),
        path: path.display().to_string(),
        source,
    };
    let (method, bytes) = match &source.kind {
        SourceKind::Sqlite(file) if file.exists() && !request.known_empty => {
            tokio::task::block_in_place(|| {
                let connection = open_read_only(file).map_err(copy_error)?;
                // One read transaction: a consistent snapshot, committed WAL content included.
                connection
                    .execute("VACUUM INTO ?1", [path.display().to_string()])
                    .map_err(copy_error)?;
                Ok::<_, RehearsalError>(("vacuum_into", file_size(path)))
            })?
        }
        SourceKind::D1(_) if !request.known_empty => {
            let options = DumpOptions::default();
            source.check_objects(request.objects, reporter, &options, Purpose::Rehearse)?;
            reporter.warning(&format!(
                "D1 serves no queries while an export runs: `{env}`{} will not answer its Worker \
                 until the export is done",
                request
                    .size_bytes
                    .map_or_else(String::new, |size| format!(" ({})", human_bytes(size)))
            ));
            let dump = TempFile::new(request.tmp_dir, &format!("rehearse-{env}"), "sql");
            let bytes = source
                .dump_to_file(reporter, &options, dump.path(), Purpose::Rehearse)
                .await?;
            tokio::task::block_in_place(|| {
                let load_error = |source: LoadError| RehearsalError::Load {
                    env: env.clone(),
                    path: path.display().to_string(),
                    source,
                };
                let connection = crate::local::open(path).map_err(copy_error)?;
                connection
                    .pragma_update(None, "synchronous", "OFF")
                    .map_err(copy_error)?;
                let file = fs_err::File::open(dump.path())
                    .map_err(|error| load_error(LoadError::Io(error)))?;
                // Statement by statement from disk: the dump never sits in memory.
                load(&connection, BufReader::with_capacity(256 * 1024, file))
                    .map_err(load_error)?;
                connection.close().map_err(|(_, error)| copy_error(error))?;
                Ok::<_, RehearsalError>(())
            })?;
            ("export", bytes)
        }
        _ => {
            crate::local::open(path).map_err(copy_error)?;
            ("empty", file_size(path))
        }
    };
    Ok(DataCopy {
        method: method.to_owned(),
        bytes,
        duration_ms: millis(started.elapsed()),
    })
}

fn file_size(path: &Path) -> u64 {
    fs_err::metadata(path).map(|m| m.len()).unwrap_or_default()
}

/// `1.5 GB`, `12.3 MB`, `900 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    for (size, unit) in UNITS {
        if bytes >= size {
            #[expect(
                clippy::cast_precision_loss,
                reason = "one decimal of a size shown to people"
            )]
            let value = bytes as f64 / size as f64;
            return format!("{value:.1} {unit}");
        }
    }
    format!("{bytes} bytes")
}

/// What applying did to the copy, before the comparison.
struct Applied {
    migrations: Vec<Rehearsed>,
    before: Counts,
    after: Counts,
    fk_before: BTreeMap<(String, String), i64>,
    fk_after: BTreeMap<(String, String), i64>,
    failure: Option<Failure>,
}

fn apply_and_compare(
    connection: &mut Connection,
    rules: &D1Rules,
    request: &Request<'_>,
    reporter: &dyn RehearsalReporter,
) -> Result<Applied, String> {
    let sqlite = |error: rusqlite::Error| error.to_string();
    let before = rows::count_all(connection, request.ignore).map_err(sqlite)?;
    let fk_before = rows::foreign_key_violations(connection).map_err(sqlite)?;
    let mut migrations: Vec<Rehearsed> = request
        .pending
        .iter()
        .map(|m| Rehearsed {
            name: m.name.clone(),
            sha256: m.sha256.clone(),
            statements: m.statements.len(),
            outcome: MigrationOutcome::NotAttempted,
            duration_ms: None,
        })
        .collect();
    let units: Vec<&[&Migration]> = if request.all_in_one {
        vec![request.pending]
    } else {
        request.pending.chunks(1).collect()
    };
    let mut failure = None;
    let mut done = 0;
    for unit in units {
        for migration in unit {
            reporter.on_migration_start(&migration.name);
        }
        let statements: Vec<Statement> = unit
            .iter()
            .flat_map(|m| m.statements.iter().map(|s| Statement::new(s.sql.clone())))
            .collect();
        let started = Instant::now();
        let result = crate::local::run_batch(connection, &statements, Some(rules));
        let elapsed = millis(started.elapsed());
        let unit_range = done..done + unit.len();
        match result {
            Ok(_) => {
                for rehearsed in &mut migrations[unit_range] {
                    rehearsed.outcome = MigrationOutcome::Applied;
                    rehearsed.duration_ms = Some(elapsed);
                    reporter.on_migration_done(rehearsed);
                }
                done += unit.len();
            }
            Err(BackendError::Statement { index, message, .. }) => {
                let (position, statement) = locate(unit, index);
                let failed = unit[position];
                for (offset, rehearsed) in migrations[unit_range].iter_mut().enumerate() {
                    rehearsed.outcome = if offset == position {
                        MigrationOutcome::Failed
                    } else {
                        MigrationOutcome::RolledBack
                    };
                    rehearsed.duration_ms = Some(elapsed);
                    reporter.on_migration_done(rehearsed);
                }
                failure = Some(Failure {
                    migration: failed.name.clone(),
                    statement: statement.map(|i| i + 1),
                    line: statement.map(|i| failed.statements[i].line),
                    message,
                    not_attempted: request.pending[done + position + 1..]
                        .iter()
                        .map(|m| m.name.clone())
                        .collect(),
                });
                break;
            }
            Err(other) => return Err(other.to_string()),
        }
    }
    let after = rows::count_all(connection, request.ignore).map_err(sqlite)?;
    let fk_after = rows::foreign_key_violations(connection).map_err(sqlite)?;
    Ok(Applied {
        migrations,
        before,
        after,
        fk_before,
        fk_after,
        failure,
    })
}

/// Which migration of a unit (and which of its statements) batch index `index` is; a failure
/// without an index (the commit) is the unit's last migration.
fn locate(unit: &[&Migration], index: Option<usize>) -> (usize, Option<usize>) {
    let last = unit.len().saturating_sub(1);
    let Some(mut index) = index else {
        return (last, None);
    };
    for (position, migration) in unit.iter().enumerate() {
        if index < migration.statements.len() {
            return (position, Some(index));
        }
        index -= migration.statements.len();
    }
    (last, None)
}

/// `.d1ctl/rehearsals/` beside environments.toml.
pub fn records_dir(root: &Path) -> PathBuf {
    root.join(".d1ctl").join("rehearsals")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sql::split_statements;

    fn migration(name: &str, sql: &str) -> Migration {
        Migration {
            name: name.to_owned(),
            path: PathBuf::from(name),
            sha256: crate::core::migrations::sha256_hex(sql.as_bytes()),
            sha256_lf: String::new(),
            size: sql.len(),
            statements: split_statements(sql, 1).unwrap(),
            drizzle: None,
        }
    }

    #[test]
    fn a_batch_index_names_the_migration_and_its_statement() {
        let first = migration("a.sql", "CREATE TABLE a (x);\nCREATE TABLE b (x);\n");
        let second = migration("b.sql", "CREATE TABLE c (x);\n");
        let unit = [&first, &second];
        assert_eq!(locate(&unit, Some(0)), (0, Some(0)));
        assert_eq!(locate(&unit, Some(1)), (0, Some(1)));
        assert_eq!(locate(&unit, Some(2)), (1, Some(0)));
        assert_eq!(locate(&unit, None), (1, None), "the commit: the last one");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(900), "900 bytes");
        assert_eq!(human_bytes(53_248), "52.0 KB");
        assert_eq!(human_bytes(1_073_741_824), "1.0 GB");
    }

    #[test]
    fn a_record_counts_only_for_the_same_names_and_checksums() {
        let one = migration("0002_a.sql", "CREATE TABLE a (x);\n");
        let edited = migration("0002_a.sql", "CREATE TABLE a (x, y);\n");
        let rehearsal = Rehearsal {
            environment: "production".to_owned(),
            backend: BackendKind::D1,
            simulator: false,
            database: "app".to_owned(),
            source: "staging".to_owned(),
            rehearsed_at: "2026-11-21T21:33:40.023Z".to_owned(),
            all_in_one: false,
            migrations: vec![Rehearsed {
                name: one.name.clone(),
                sha256: one.sha256.clone(),
                statements: 1,
                outcome: MigrationOutcome::Applied,
                duration_ms: Some(1),
            }],
            copy: DataCopy {
                method: "export".to_owned(),
                bytes: 10,
                duration_ms: 1,
            },
            tables: Vec::new(),
            losses: Vec::new(),
            foreign_keys: ForeignKeys::default(),
            failure: None,
            outcome: Outcome::Passed,
            passed: true,
            duration_ms: 3,
        };
        assert!(record::same_pending_set(&rehearsal, &[&one]));
        assert!(!record::same_pending_set(&rehearsal, &[&edited]));
        assert!(!record::same_pending_set(&rehearsal, &[&one, &edited]));
        assert_eq!(
            record::check(Some(&rehearsal), "production", &[&one]).status,
            "passed"
        );
        assert_eq!(
            record::check(Some(&rehearsal), "production", &[&edited]).status,
            "outdated"
        );
        assert_eq!(
            record::check(None, "production", &[&one]).command,
            "d1ctl rehearse --to production"
        );
    }
}
