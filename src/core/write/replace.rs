//! The job of `pull`: replace a local SQLite env with a copy of another env's schema and data.
//!
//! The source is dumped in D1's format and the dump executed into a new file beside the target
//! before the lock (a long read needs no lock). Under the lock the target's current file is the
//! session's rollback point (a backup), the copy drops what belongs to the source (its lock
//! rows, sessions and rollback points, which name the source's bookmarks) and records this
//! session and its point instead, and is renamed over the target.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::backend::{Backend, BackendError, Statement};
use crate::core::apply::ApplyReporter;
use crate::core::export::{ExportReporter, Purpose, Source};
use crate::core::ledger::{D1CTL_TABLE, DRIZZLE_TABLE};
use crate::core::lock::Holder;
use crate::core::temp::TempFile;
use crate::core::write::session;
use crate::core::write::{Job, Readiness, Session, UnitFailure, Written};
use crate::d1::dump::DumpOptions;
use crate::local::dump::{load, open_read_only};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("could not dump the source")]
    Export(#[from] crate::core::export::ExportError),
    #[error("could not build the copy in `{path}`: {message}")]
    Build { path: String, message: String },
}

pub struct PullJob<'a> {
    pub source: &'a Source<'a>,
    pub target_env: &'a str,
    pub target: &'a Path,
    /// The project's wrangler ledger table name (a ledger, not user data).
    pub wrangler_table: &'a str,
    pub tmp_dir: &'a Path,
    pub reporter: &'a dyn ExportReporter,
    built: Mutex<Option<Built>>,
}

struct Built {
    file: TempFile,
    tables: usize,
    bytes: u64,
    foreign_key_violations: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PullPlan {
    /// The target's own tables that hold rows (what the copy replaces).
    pub with_data: Vec<String>,
}

/// What the copy holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pulled {
    pub tables: usize,
    pub bytes: u64,
    pub foreign_key_violations: u64,
}

impl<'a> PullJob<'a> {
    pub fn new(
        source: &'a Source<'a>,
        target_env: &'a str,
        target: &'a Path,
        wrangler_table: &'a str,
        tmp_dir: &'a Path,
        reporter: &'a dyn ExportReporter,
    ) -> Self {
        Self {
            source,
            target_env,
            target,
            wrangler_table,
            tmp_dir,
            reporter,
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
impl Job for PullJob<'_> {
    type Plan = PullPlan;
    type Done = Pulled;
    type Verified = Pulled;
    type After = bool;

    async fn plan(
        &self,
        _backend: &dyn Backend,
        _holder: Option<&Holder>,
    ) -> Result<PullPlan, BackendError> {
        let with_data =
            tokio::task::block_in_place(|| tables_with_rows(self.target, self.wrangler_table))
                .map_err(|error| BackendError::Unavailable {
                    message: format!(
                        "could not open `{}` to see what it holds: {error}",
                        self.target.display()
                    ),
                    hint: None,
                })?;
        Ok(PullPlan { with_data })
    }

    fn readiness(&self, _plan: &PullPlan) -> Readiness {
        Readiness::Ready
    }

    fn same(&self, shown: &PullPlan, now: &PullPlan) -> bool {
        shown.with_data == now.with_data
    }

    fn confirmation(&self, plan: &PullPlan) -> Option<String> {
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
            format!(
                "env `{}` (`{}`) holds rows in {} table{} ({}{more}); `pull` replaces the whole file with `{}`'s data (its current file is kept under `.d1ctl/backups/`)",
                self.target_env,
                self.target.display(),
                plan.with_data.len(),
                if plan.with_data.len() == 1 { "" } else { "s" },
                shown.join(", "),
                self.source.env.name,
            )
        })
    }

    async fn prepare(&self, _plan: &PullPlan) -> anyhow::Result<()> {
        let options = DumpOptions::default();
        self.source
            .check(self.reporter, &options, Purpose::Pull)
            .await
            .map_err(PullError::from)?;
        let dump = TempFile::new(
            self.tmp_dir,
            &format!("pull-{}", file_safe(&self.source.env.name)),
            "sql",
        );
        let bytes = self
            .source
            .dump_to_file(self.reporter, &options, dump.path(), Purpose::Pull)
            .await
            .map_err(PullError::from)?;
        self.reporter.detail(&format!(
            "dumped `{}` ({bytes} bytes) to `{}`",
            self.source.env.name,
            dump.path().display()
        ));
        let built = tokio::task::block_in_place(|| build(dump.path(), self.target, bytes))?;
        *self.built() = Some(built);
        Ok(())
    }

    async fn write(
        &self,
        session: &Session<'_>,
        _plan: &PullPlan,
        _reporter: &dyn ApplyReporter,
    ) -> Written<Pulled> {
        let Some(built) = self.built().take() else {
            return Written {
                done: Pulled::default(),
                failure: Some(UnitFailure::Other {
                    headline: "the copy was not built; nothing was replaced".to_owned(),
                    error: BackendError::Unavailable {
                        message: "no copy".to_owned(),
                        hint: None,
                    },
                }),
            };
        };
        let done = Pulled {
            tables: built.tables,
            bytes: built.bytes,
            foreign_key_violations: built.foreign_key_violations,
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
                done,
                failure: None,
            },
            Err(message) => Written {
                done: Pulled::default(),
                failure: Some(UnitFailure::Other {
                    headline: format!(
                        "could not put the copy in place of `{}`: {message}",
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
        _plan: &PullPlan,
        done: &Pulled,
        _release: Vec<Statement>,
    ) -> Result<Pulled, BackendError> {
        // The lock row went with the old file (now the backup, where a restore clears it):
        // the copy has nothing to release.
        let statements = vec![Statement::new(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND (name NOT LIKE '\\_d1ctl\\_%' ESCAPE '\\' OR name = '_d1ctl_migrations')",
        )];
        let rows = backend.batch(&statements).await?;
        let tables = rows
            .last()
            .and_then(|r| r.rows.first())
            .and_then(|row| row.first())
            .and_then(crate::backend::Value::as_i64)
            .unwrap_or_default();
        Ok(Pulled {
            tables: usize::try_from(tables).unwrap_or_default(),
            ..done.clone()
        })
    }

    async fn read_back(&self, _backend: &dyn Backend) -> Result<bool, BackendError> {
        // Whether the target is still the old file: the copy is renamed over it in one step.
        Ok(self.target.exists())
    }
}

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

/// Executes the dump into a new file beside the target (same folder, so the final rename is
/// atomic).
fn build(dump: &Path, target: &Path, bytes: u64) -> anyhow::Result<Built> {
    let failed = |message: String| PullError::Build {
        path: target.display().to_string(),
        message,
    };
    let dir = target
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let name = target
        .file_name()
        .map_or_else(|| "database".into(), |name| name.to_string_lossy());
    let file = TempFile::new(dir, &format!(".{name}.d1ctl-pull"), "tmp");
    let connection = crate::local::open(file.path()).map_err(|error| failed(error.to_string()))?;
    let reader = BufReader::with_capacity(256 * 1024, fs_err::File::open(dump)?);
    let loaded = load(&connection, reader).map_err(|error| failed(error.to_string()))?;
    let tables: i64 = connection
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND (name NOT LIKE '\\_d1ctl\\_%' ESCAPE '\\' OR name = '_d1ctl_migrations')",
            [],
            |row| row.get(0),
        )
        .map_err(|error| failed(error.to_string()))?;
    connection
        .close()
        .map_err(|(_, error)| failed(error.to_string()))?;
    remove_side_files(file.path(), &["-journal", "-wal", "-shm"])?;
    Ok(Built {
        file,
        tables: usize::try_from(tables).unwrap_or_default(),
        bytes,
        foreign_key_violations: loaded.foreign_key_violations,
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
