//! An environment's schema and data in D1's dump format: through Cloudflare's export API for a
//! D1 env (polled, then downloaded to disk), by d1ctl's own dumper (`d1::dump`) for a local
//! file. Shared by `export`, `pull` and rehearsals.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::backend::{Backend, BackendError, BackendKind, Statement};
use crate::core::registry::Environment;
use crate::core::schema::Snapshot;
use crate::d1::client::{D1Backend, D1Error};
use crate::d1::dump::{DumpError, DumpOptions, VIRTUAL_TABLE_MESSAGE, is_virtual};
use crate::local::dump::{dump_file, open_read_only};

/// Progress and notes of a dump, implemented by the terminal layer.
pub trait ExportReporter: Send + Sync {
    fn warning(&self, _text: &str) {}
    fn detail(&self, _text: &str) {}
    /// D1 has started preparing the export of `env`.
    fn on_export_start(&self, _env: &str) {}
    /// One poll's messages (e.g. `Uploaded part 1`).
    fn on_export_poll(&self, _messages: &[String]) {}
    fn on_export_done(&self) {}
}

/// Why a source is dumped, for the wording of refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Export,
    Pull,
    Rehearse,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// D1 would refuse the dump (virtual tables); nothing was started.
    #[error("{message}")]
    Refused { message: String, hint: String },
    #[error("could not dump env `{env}` ({label})")]
    Dump {
        env: String,
        label: String,
        #[source]
        source: DumpError,
    },
    #[error("could not export env `{env}` ({label})")]
    Export {
        env: String,
        label: String,
        #[source]
        source: D1Error,
    },
    #[error("could not write the dump to `{path}`")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ExportError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ExportError::Refused { hint, .. } => Some(hint.clone()),
            ExportError::Export { source, .. } => source.hint(),
            ExportError::Dump { .. } | ExportError::Write { .. } => None,
        }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "one per export, never in a collection: its size does not matter"
)]
pub enum SourceKind {
    /// An existing database file.
    Sqlite(PathBuf),
    D1(D1Backend),
}

/// An environment opened for dumping: a local file that exists, or a confirmed D1 database.
pub struct Source<'a> {
    pub env: &'a Environment,
    pub kind: SourceKind,
    /// The path, or `name uuid` as Cloudflare reports them.
    pub label: String,
}

/// One row of `sqlite_schema` that has SQL.
#[derive(Debug, Clone)]
pub struct SchemaObject {
    pub kind: String,
    pub name: String,
    pub sql: String,
}

impl SchemaObject {
    /// The objects of a snapshot already read (so checking a dump costs no request).
    pub fn from_snapshot(snapshot: &Snapshot) -> Vec<Self> {
        snapshot
            .objects
            .iter()
            .filter_map(|object| {
                Some(Self {
                    kind: object.kind.clone(),
                    name: object.name.clone(),
                    sql: object.sql.clone()?,
                })
            })
            .collect()
    }
}

impl Source<'_> {
    pub fn kind(&self) -> BackendKind {
        match self.kind {
            SourceKind::Sqlite(_) => BackendKind::Sqlite,
            SourceKind::D1(_) => BackendKind::D1,
        }
    }

    /// Every row of `sqlite_schema` with its SQL, in creation order.
    async fn objects(&self) -> Result<Vec<SchemaObject>, BackendError> {
        const SQL: &str =
            "SELECT type, name, sql FROM sqlite_schema WHERE sql NOT NULL ORDER BY rowid";
        match &self.kind {
            SourceKind::Sqlite(path) => tokio::task::block_in_place(|| {
                let listed = (|| {
                    let connection = open_read_only(path)?;
                    let mut statement = connection.prepare(SQL)?;
                    statement
                        .query_map([], |row| {
                            Ok(SchemaObject {
                                kind: row.get(0)?,
                                name: row.get(1)?,
                                sql: row.get(2)?,
                            })
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })();
                listed.map_err(|error| BackendError::Unavailable {
                    message: error.to_string(),
                    hint: None,
                })
            }),
            SourceKind::D1(backend) => {
                let rows = backend.read(&[Statement::new(SQL)]).await?;
                let rows = rows.into_iter().next().unwrap_or_default();
                Ok(rows
                    .rows
                    .iter()
                    .map(|row| {
                        let text = |column: &str| {
                            rows.get(row, column)
                                .as_str()
                                .unwrap_or_default()
                                .to_owned()
                        };
                        SchemaObject {
                            kind: text("type"),
                            name: text("name"),
                            sql: text("sql"),
                        }
                    })
                    .collect())
            }
        }
    }

    /// Before anything is exported: warns about `--table` names that match nothing, and refuses
    /// a dump D1 would refuse (virtual tables), so a D1 database is never left mid-way through a
    /// failed export (workers-sdk #9519). Reads the source's objects (one request on D1).
    pub async fn check(
        &self,
        reporter: &dyn ExportReporter,
        options: &DumpOptions,
        purpose: Purpose,
    ) -> Result<(), ExportError> {
        match self.objects().await {
            Ok(objects) => self.check_objects(&objects, reporter, options, purpose),
            Err(error) => {
                // The export itself still refuses what it must; only the early check is lost.
                reporter.detail(&format!(
                    "could not list the tables of `{}` before exporting: {error}",
                    self.env.name
                ));
                Ok(())
            }
        }
    }

    /// [`Source::check`] on objects already read.
    pub fn check_objects(
        &self,
        objects: &[SchemaObject],
        reporter: &dyn ExportReporter,
        options: &DumpOptions,
        purpose: Purpose,
    ) -> Result<(), ExportError> {
        for name in &options.tables {
            if !objects.iter().any(|object| &object.name == name) {
                reporter.warning(&format!(
                    "env `{}` has no table, index, trigger or view named `{name}`; it is not in the dump",
                    self.env.name
                ));
            }
        }
        let wanted =
            |name: &str| options.tables.is_empty() || options.tables.iter().any(|t| t == name);
        let refused: Vec<&str> = objects
            .iter()
            .filter(|object| {
                object.kind == "table"
                    && wanted(&object.name)
                    && is_virtual(&object.name, &object.sql)
            })
            .map(|object| object.name.as_str())
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(self.virtual_table_error(&refused, objects, purpose))
        }
    }

    /// The refusal of a dump with virtual tables, naming them and what does work.
    fn virtual_table_error(
        &self,
        refused: &[&str],
        objects: &[SchemaObject],
        purpose: Purpose,
    ) -> ExportError {
        let virtual_tables: Vec<&str> = objects
            .iter()
            .filter(|object| object.kind == "table" && is_virtual(&object.name, &object.sql))
            .map(|object| object.name.as_str())
            .collect();
        let ordinary: Vec<&str> = objects
            .iter()
            .filter(|object| object.kind == "table")
            .map(|object| object.name.as_str())
            .filter(|name| {
                !virtual_tables.contains(name)
                    && !is_shadow_table(name, &virtual_tables)
                    && !name.starts_with("sqlite_")
                    && !name.to_ascii_lowercase().starts_with("_cf_")
                    // d1ctl's own bookkeeping (lock, sessions, rollback points) is no one's data.
                    && (!name.starts_with("_d1ctl_") || *name == crate::core::ledger::D1CTL_TABLE)
            })
            .collect();
        let names = if refused.is_empty() {
            "virtual tables".to_owned()
        } else {
            let list = refused
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("virtual tables ({list})")
        };
        let mut tables_flags = String::new();
        for name in &ordinary {
            tables_flags.push_str(" --table ");
            tables_flags.push_str(&shell_word(name));
        }
        let message = format!(
            "D1 refuses to export databases with virtual tables (FTS5), and env `{}` has {names} \
             (\"{VIRTUAL_TABLE_MESSAGE}\")",
            self.env.name
        );
        let hint = match purpose {
            Purpose::Export if ordinary.is_empty() => {
                "`--table` naming only ordinary (non-virtual) tables works; this database has none"
                    .to_owned()
            }
            Purpose::Export => format!(
                "`--table` naming only ordinary tables works, e.g. `d1ctl export {}{tables_flags}`",
                self.env.name
            ),
            Purpose::Pull => format!(
                "`pull` copies through D1's dump format, which cannot carry virtual tables; \
                 `d1ctl export {}{tables_flags}` exports the ordinary tables",
                self.env.name
            ),
            Purpose::Rehearse => format!(
                "D1's export cannot carry virtual tables, so `{}` cannot be copied for a \
                 rehearsal; `d1ctl lint --to {}` still checks the migrations against its row counts",
                self.env.name, self.env.name
            ),
        };
        ExportError::Refused { message, hint }
    }

    /// Turns a failed local dump into the error the user sees.
    fn dump_error(&self, error: DumpError, purpose: Purpose) -> ExportError {
        match error {
            DumpError::VirtualTable { table } => {
                self.virtual_table_error(&[table.as_str()], &[], purpose)
            }
            other => ExportError::Dump {
                env: self.env.name.clone(),
                label: self.label.clone(),
                source: other,
            },
        }
    }

    /// Writes the dump of a local file to `out`; returns the dump's size.
    pub fn dump_sqlite(
        &self,
        path: &Path,
        options: &DumpOptions,
        out: impl Write,
        purpose: Purpose,
    ) -> Result<u64, ExportError> {
        dump_file(path, options, out).map_err(|error| self.dump_error(error, purpose))
    }

    /// Dumps the source into `destination` (created or truncated); returns the dump's size.
    pub async fn dump_to_file(
        &self,
        reporter: &dyn ExportReporter,
        options: &DumpOptions,
        destination: &Path,
        purpose: Purpose,
    ) -> Result<u64, ExportError> {
        let write_error = |source: std::io::Error| ExportError::Write {
            path: destination.display().to_string(),
            source,
        };
        match &self.kind {
            SourceKind::Sqlite(path) => tokio::task::block_in_place(|| {
                let file = fs_err::File::create(destination).map_err(write_error)?;
                let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
                let bytes = self.dump_sqlite(path, options, &mut out, purpose)?;
                out.flush().map_err(write_error)?;
                Ok(bytes)
            }),
            SourceKind::D1(backend) => {
                reporter.on_export_start(&self.env.name);
                let on_poll = |messages: &[String]| reporter.on_export_poll(messages);
                let result = backend
                    .client()
                    .export(options.into(), destination, &on_poll)
                    .await;
                reporter.on_export_done();
                result.map_err(|error| match error {
                    D1Error::Export { message } if message.contains(VIRTUAL_TABLE_MESSAGE) => {
                        self.virtual_table_error(&[], &[], purpose)
                    }
                    other => ExportError::Export {
                        env: self.env.name.clone(),
                        label: self.label.clone(),
                        source: other,
                    },
                })
            }
        }
    }
}

/// FTS5's shadow tables of `virtual_tables`: `<vt>_config`, `_content`, `_data`, `_docsize`,
/// `_idx`.
fn is_shadow_table(name: &str, virtual_tables: &[&str]) -> bool {
    virtual_tables.iter().any(|table| {
        name.strip_prefix(table)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|suffix| ["config", "content", "data", "docsize", "idx"].contains(&suffix))
    })
}

/// A table name as one shell word.
fn shell_word(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        name.to_owned()
    } else {
        format!("'{}'", name.replace('\'', r"'\''"))
    }
}
