//! The job of `pull` and `reset`: replace a local SQLite env's whole file with a new one.
//!
//! The new file is built beside the target before the lock (a long read needs no lock): for
//! `pull` (and `reset --from`) the source is dumped in D1's format and the dump executed into
//! it; for `reset` every migration of the folder is applied to it by `core::apply`, each with
//! its ledger rows, exactly as `apply` writes them. Under the lock the target's current file is
//! the session's rollback point (a backup), the new file drops what belongs to a source (its
//! lock rows, sessions and rollback points, which name the source's bookmarks) and records this
//! session and its point instead, and is renamed over the target.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::backend::{Backend, BackendError, BackendKind, Statement};
use crate::core::apply::{self, Applied, ApplyReporter, Extras, Problem};
use crate::core::export::{ExportReporter, Purpose, Source};
use crate::core::ledger::{D1CTL_TABLE, DRIZZLE_TABLE, LedgerState, Ledgers};
use crate::core::lock::Holder;
use crate::core::migrations::{Migration, MigrationSet};
use crate::core::schema::Snapshot;
use crate::core::temp::TempFile;
use crate::core::write::session;
use crate::core::write::{Job, Readiness, Session, UnitFailure, Written};
use crate::d1::dump::DumpOptions;
use crate::local::SqliteBackend;
use crate::local::dump::{load, open_read_only};

#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    #[error("could not dump the source")]
    Export(#[from] crate::core::export::ExportError),
    #[error("could not build the new file in `{path}`: {message}")]
    Build { path: String, message: String },
    /// A migration failed on the new file; the target was not touched.
    #[error("{headline}; the new file was discarded and `{target}` was not touched")]
    Migration { headline: String, target: String },
}

/// What the new file is made of.
pub enum Content<'a> {
    /// `pull`: a copy of another env's schema and data.
    Copy {
        source: &'a Source<'a>,
        /// Where the dump is written.
        tmp_dir: &'a Path,
        reporter: &'a dyn ExportReporter,
    },
    /// `reset`: every migration of the folder, applied with its ledger rows; no data.
    Migrations {
        set: &'a MigrationSet,
        ledgers: &'a Ledgers,
        /// Who applies, as recorded in d1ctl's ledger.
        actor: &'a str,
        /// The target's `d1_rules`: the new file is judged as the target would be.
        d1_rules: bool,
        reporter: &'a dyn ApplyReporter,
    },
}

pub struct ReplaceJob<'a> {
    pub content: Content<'a>,
    pub target_env: &'a str,
    pub target: &'a Path,
    /// The project's wrangler ledger table name (a ledger, not user data).
    pub wrangler_table: &'a str,
    /// The command, for the confirmation: `pull`, `reset`.
    pub verb: &'a str,
    built: Mutex<Option<Built>>,
}

struct Built {
    file: TempFile,
    done: Replaced,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplacePlan {
    /// The target's own tables that hold rows (what the new file replaces).
    pub with_data: Vec<String>,
    /// Whether the target has a file at all.
    pub exists: bool,
    /// `reset`: the migrations the new file gets.
    pub migrations: Vec<String>,
    /// `reset`: what stops a migration from being applied at all (as `apply` checks).
    pub problems: Vec<Problem>,
}

/// What the new file holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replaced {
    pub tables: usize,
    /// Size of the dump loaded (`pull`); 0 for a file built from the migrations.
    pub bytes: u64,
    pub foreign_key_violations: u64,
    /// The migrations applied to the new file (`reset`).
    pub applied: Vec<Applied>,
}

impl<'a> ReplaceJob<'a> {
    pub fn new(
        content: Content<'a>,
        verb: &'a str,
        target_env: &'a str,
        target: &'a Path,
        wrangler_table: &'a str,
    ) -> Self {
        Self {
            content,
            target_env,
            target,
            wrangler_table,
            verb,
            built: Mutex::new(None),
        }
    }

    fn built(&self) -> std::sync::MutexGuard<'_, Option<Built>> {
        self.built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Job for ReplaceJob<'_> {
    type Plan = ReplacePlan;
    type Done = Replaced;
    type Verified = Replaced;
    type After = bool;

    async fn plan(
        &self,
        _backend: &dyn Backend,
        _holder: Option<&Holder>,
    ) -> Result<ReplacePlan, BackendError> {
        let with_data =
            tokio::task::block_in_place(|| tables_with_rows(self.target, self.wrangler_table))
                .map_err(|error| BackendError::Unavailable {
                    message: format!(
                        "could not open `{}` to see what it holds: {error}",
                        self.target.display()
                    ),
                    hint: None,
                })?;
        let (migrations, problems) = match &self.content {
            Content::Copy { .. } => (Vec::new(), Vec::new()),
            Content::Migrations { set, .. } => {
                let all: Vec<&Migration> = set.migrations.iter().collect();
                (
                    all.iter().map(|m| m.name.clone()).collect(),
                    apply::check_pending(&all, BackendKind::Sqlite),
                )
            }
        };
        Ok(ReplacePlan {
            with_data,
            exists: self.target.exists(),
            migrations,
            problems,
        })
    }

    fn readiness(&self, plan: &ReplacePlan) -> Readiness {
        if plan.problems.is_empty() {
            Readiness::Ready
        } else {
            Readiness::Blocked
        }
    }

    fn same(&self, shown: &ReplacePlan, now: &ReplacePlan) -> bool {
        shown.with_data == now.with_data
    }

    fn confirmation(&self, plan: &ReplacePlan) -> Option<String> {
        (!plan.with_data.is_empty()).then(|| {
            let shown: Vec<String> = plan
                .with_data
                .iter()
                .take(8)
                .map(|t| format!("`{t}`"))
                .collect();
            let more = if plan.with_data.len() > shown.len() {
                format!(" and {} more", plan.with_data.len() - shown.len())
            } else {
                String::new()
            };
            let with = match &self.content {
                Content::Copy { source, .. } => format!("`{}`'s data", source.env.name),
                Content::Migrations { .. } => {
                    "a new one holding every migration and no rows".to_owned()
                }
            };
            format!(
                "env `{}` (`{}`) holds rows in {} table{} ({}{more}); `{}` replaces the whole file with {with} (its current file is kept under `.d1ctl/backups/`)",
                self.target_env,
                self.target.display(),
                plan.with_data.len(),
                if plan.with_data.len() == 1 { "" } else { "s" },
                shown.join(", "),
                self.verb,
            )
        })
    }

    async fn prepare(&self, _plan: &ReplacePlan) -> anyhow::Result<()> {
        let built = match &self.content {
            Content::Copy {
                source,
                tmp_dir,
                reporter,
            } => {
                let options = DumpOptions::default();
                source
                    .check(*reporter, &options, Purpose::Pull)
                    .await
                    .map_err(ReplaceError::from)?;
                let dump = TempFile::new(
                    tmp_dir,
                    &format!("pull-{}", file_safe(&source.env.name)),
                    "sql",
                );
                let bytes = source
                    .dump_to_file(*reporter, &options, dump.path(), Purpose::Pull)
                    .await
                    .map_err(ReplaceError::from)?;
                reporter.detail(&format!(
                    "dumped `{}` ({bytes} bytes) to `{}`",
                    source.env.name,
                    dump.path().display()
                ));
                tokio::task::block_in_place(|| build(dump.path(), self.target, bytes))?
            }
            Content::Migrations {
                set,
                ledgers,
                actor,
                d1_rules,
                reporter,
            } => build_fresh(set, ledgers, actor, *d1_rules, *reporter, self.target).await?,
        };
        *self.built() = Some(built);
        Ok(())
    }

    async fn write(
        &self,
        session: &Session<'_>,
        _plan: &ReplacePlan,
        _reporter: &dyn ApplyReporter,
    ) -> Written<Replaced> {
        let Some(built) = self.built().take() else {
            return Written {
                done: Replaced::default(),
                failure: Some(UnitFailure::Other {
                    headline: "the new file was not built; nothing was replaced".to_owned(),
                    error: BackendError::Unavailable {
                        message: "no new file".to_owned(),
                        hint: None,
                    },
                }),
            };
        };
        let record = session::record_statements(
            &session.holder.id,
            session.point,
            &session.options.actor,
            &session.options.command,
        );
        session.backend.release_files();
        let result = tokio::task::block_in_place(|| {
            finish_copy(built.file.path(), &record)?;
            release_journal(self.target)?;
            built
                .file
                .persist(self.target)
                .map_err(|error| error.to_string())
        });
        match result {
            Ok(()) => Written {
                done: built.done,
                failure: None,
            },
            Err(message) => Written {
                done: Replaced::default(),
                failure: Some(UnitFailure::Other {
                    headline: format!(
                        "could not put the new file in place of `{}`: {message}",
                        self.target.display()
                    ),
                    error: BackendError::Unavailable {
                        message,
                        hint: Some(
                            "another process (e.g. `wrangler dev`) may have the file open; stop it and rerun"
                                .to_owned(),
                        ),
                    },
                }),
            },
        }
    }

    async fn verify(
        &self,
        backend: &dyn Backend,
        _plan: &ReplacePlan,
        done: &Replaced,
        _release: Vec<Statement>,
    ) -> Result<Replaced, BackendError> {
        // The lock row went with the old file (now the backup, where a restore clears it):
        // the new file has nothing to release.
        let statements = vec![Statement::new(COUNT_TABLES)];
        let rows = backend.batch(&statements).await?;
        let tables = rows
            .last()
            .and_then(|r| r.rows.first())
            .and_then(|row| row.first())
            .and_then(crate::backend::Value::as_i64)
            .unwrap_or_default();
        Ok(Replaced {
            tables: usize::try_from(tables).unwrap_or_default(),
            ..done.clone()
        })
    }

    async fn read_back(&self, _backend: &dyn Backend) -> Result<bool, BackendError> {
        // Whether the target is still the old file: the new one is renamed over it in one step.
        Ok(self.target.exists())
    }
}

/// Tables of a database, ledgers included, SQLite's own and d1ctl's bookkeeping left out.
const COUNT_TABLES: &str = "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND (name NOT LIKE '\\_d1ctl\\_%' ESCAPE '\\' OR name = '_d1ctl_migrations')";

/// The target's own tables that hold at least one row: the ledgers, d1ctl's bookkeeping and
/// SQLite's and Cloudflare's internal tables do not count. A table that cannot be read counts.
fn tables_with_rows(path: &Path, wrangler_table: &str) -> rusqlite::Result<Vec<String>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let connection = open_read_only(path)?;
    let tables: Vec<(String, String)> = connection
        .prepare(
            "SELECT name, coalesce(sql, '') FROM sqlite_schema WHERE type = 'table' ORDER BY rowid",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let virtual_tables: Vec<&str> = tables
        .iter()
        .filter(|(_, sql)| sql.starts_with("CREATE VIRTUAL TABLE"))
        .map(|(name, _)| name.as_str())
        .collect();
    let mut with_rows = Vec::new();
    for (name, _) in &tables {
        let lower = name.to_ascii_lowercase();
        let bookkeeping = lower.starts_with("sqlite_")
            || lower.starts_with("_cf_")
            || lower.starts_with("_d1ctl_")
            || name == D1CTL_TABLE
            || name == DRIZZLE_TABLE
            || name == wrangler_table
            || virtual_tables.iter().any(|vt| {
                name.strip_prefix(vt)
                    .is_some_and(|rest| rest.starts_with('_'))
            });
        if bookkeeping {
            continue;
        }
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM \"{}\")",
            name.replace('"', "\"\"")
        );
        let has_rows = connection
            .query_row(&sql, [], |row| row.get::<_, bool>(0))
            .unwrap_or(true);
        if has_rows {
            with_rows.push(name.clone());
        }
    }
    Ok(with_rows)
}

/// A new file's name beside the target (same folder, so the final rename is atomic).
fn new_file(target: &Path, kind: &str) -> std::io::Result<TempFile> {
    let dir = target
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let name = target
        .file_name()
        .map_or_else(|| "database".into(), |name| name.to_string_lossy());
    Ok(TempFile::new(dir, &format!(".{name}.d1ctl-{kind}"), "tmp"))
}

/// Counts the new file's tables and closes it, leaving no side files.
fn close_new(connection: Connection, path: &Path) -> Result<usize, String> {
    let tables: i64 = connection
        .query_row(COUNT_TABLES, [], |row| row.get(0))
        .map_err(|error| error.to_string())?;
    connection.close().map_err(|(_, error)| error.to_string())?;
    remove_side_files(path, &["-journal", "-wal", "-shm"]).map_err(|error| error.to_string())?;
    Ok(usize::try_from(tables).unwrap_or_default())
}

/// Executes the dump into a new file beside the target.
fn build(dump: &Path, target: &Path, bytes: u64) -> anyhow::Result<Built> {
    let failed = |message: String| ReplaceError::Build {
        path: target.display().to_string(),
        message,
    };
    let file = new_file(target, "pull")?;
    let connection = crate::local::open(file.path()).map_err(|error| failed(error.to_string()))?;
    let reader = BufReader::with_capacity(256 * 1024, fs_err::File::open(dump)?);
    let loaded = load(&connection, reader).map_err(|error| failed(error.to_string()))?;
    let tables = close_new(connection, file.path()).map_err(failed)?;
    Ok(Built {
        file,
        done: Replaced {
            tables,
            bytes,
            foreign_key_violations: loaded.foreign_key_violations,
            applied: Vec::new(),
        },
    })
}

/// Applies every migration of the folder to a new, empty file beside the target, through the
/// same code and with the same ledger rows as `apply` (no lock or session: nobody else knows
/// the file yet).
async fn build_fresh(
    set: &MigrationSet,
    ledgers: &Ledgers,
    actor: &str,
    d1_rules: bool,
    reporter: &dyn ApplyReporter,
    target: &Path,
) -> anyhow::Result<Built> {
    let failed = |message: String| ReplaceError::Build {
        path: target.display().to_string(),
        message,
    };
    let file = new_file(target, "reset")?;
    let backend = SqliteBackend::new(file.path(), d1_rules);
    let all: Vec<&Migration> = set.migrations.iter().collect();
    let outcome = apply::apply(
        &backend,
        ledgers,
        &LedgerState::default(),
        &Snapshot::default(),
        &all,
        actor,
        &Extras::default(),
        reporter,
    )
    .await;
    // Closed before anything else touches the file (or the temp file's drop removes it).
    backend.release_files();
    if let Some(failure) = outcome.failure {
        return Err(ReplaceError::Migration {
            headline: failure.headline(),
            target: target.display().to_string(),
        }
        .into());
    }
    let tables = tokio::task::block_in_place(|| {
        let connection = crate::local::open(file.path()).map_err(|error| error.to_string())?;
        close_new(connection, file.path())
    })
    .map_err(failed)?;
    Ok(Built {
        file,
        done: Replaced {
            tables,
            bytes: 0,
            foreign_key_violations: 0,
            applied: outcome.applied,
        },
    })
}

/// In the copy: drops what belongs to the source and records this session and its point.
fn finish_copy(path: &Path, record: &[Statement]) -> Result<(), String> {
    let mut connection = crate::local::open(path).map_err(|error| error.to_string())?;
    let mut statements: Vec<Statement> = session::foreign_bookkeeping()
        .into_iter()
        .map(Statement::new)
        .collect();
    statements.extend_from_slice(record);
    crate::local::run_batch(&mut connection, &statements, None)
        .map_err(|error| error.to_string())?;
    connection.close().map_err(|(_, error)| error.to_string())?;
    remove_side_files(path, &["-journal", "-wal", "-shm"]).map_err(|error| error.to_string())
}

/// Before the new file takes the target's name: the target's WAL is checkpointed and its
/// journal mode set to DELETE (which needs that no other process holds it), so no `-wal`,
/// `-shm` or hot `-journal` of the old file can be applied to the new one.
fn release_journal(target: &Path) -> Result<(), String> {
    if !target.exists() {
        return Ok(());
    }
    {
        let connection = Connection::open_with_flags(
            target,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| error.to_string())?;
        crate::d1::authorizer::harden(&connection).map_err(|error| error.to_string())?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|error| error.to_string())?;
        // Reading recovers a hot journal and reads the WAL; switching to DELETE checkpoints it.
        connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|error| error.to_string())?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode=DELETE", [], |row| row.get(0))
            .map_err(|error| error.to_string())?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(format!("its journal mode stayed `{mode}`"));
        }
        connection.close().map_err(|(_, error)| error.to_string())?;
    }
    // Whatever is left now is stale: the old file's content is complete without it.
    remove_side_files(target, &["-wal", "-shm", "-journal"]).map_err(|error| error.to_string())
}

fn remove_side_files(path: &Path, suffixes: &[&str]) -> std::io::Result<()> {
    for suffix in suffixes {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let side = PathBuf::from(name);
        if side.exists() {
            fs_err::remove_file(side)?;
        }
    }
    Ok(())
}

/// An env name as part of a file name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
