//! `d1ctl export ENV`: an environment's schema and data as SQL, in D1's dump format.
//!
//! A D1 env goes through Cloudflare's export API (polled, then downloaded); a local env is dumped
//! by d1ctl (`d1::dump`) in the same format. The helpers here are shared with `pull`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::backend::{Backend, BackendKind, Statement};
use crate::cli::ExportArgs;
use crate::cli::printer::Printer;
use crate::commands::{Context, ExitStatus, UserError, display_path};
use crate::core::registry::{Environment, Registry, Target};
use crate::d1::client::{D1Backend, D1Error};
use crate::d1::dump::{DumpError, DumpOptions, VIRTUAL_TABLE_MESSAGE, is_virtual};
use crate::local::dump::{dump_file, open_read_only};

#[derive(Serialize)]
struct ExportReport<'a> {
    environment: &'a str,
    backend: BackendKind,
    output: String,
    bytes: u64,
}

pub(crate) async fn export(args: ExportArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let env = registry.resolve(&args.environment)?;
    let options = DumpOptions {
        no_schema: args.no_schema,
        no_data: args.no_data,
        tables: args.tables.clone(),
    };
    let source = Source::open(context, &registry, env).await?;
    source.check(context, &options, Purpose::Export).await?;

    let bytes = match &args.output {
        Some(output) => {
            let dir = output
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let partial = TempFile::new(dir, ".d1ctl-export", "sql.partial");
            let bytes = source
                .dump_to_file(context, &options, partial.path(), Purpose::Export)
                .await?;
            partial.persist(output)?;
            bytes
        }
        None => match &source.kind {
            SourceKind::Sqlite(path) => {
                let mut sink = PrinterSink::new(printer);
                let bytes = tokio::task::block_in_place(|| {
                    dump_file(path, &options, &mut sink)
                        .map_err(|error| source.dump_error(error, Purpose::Export))
                })?;
                sink.finish()?;
                bytes
            }
            SourceKind::D1(_) => {
                let temp = TempFile::new(&tmp_dir(&registry)?, "export", "sql");
                let bytes = source
                    .dump_to_file(context, &options, temp.path(), Purpose::Export)
                    .await?;
                copy_to_printer(temp.path(), printer)?;
                bytes
            }
        },
    };

    let output = args
        .output
        .as_deref()
        .map_or_else(|| "stdout".to_owned(), display_path);
    printer.message(&format!(
        "exported `{}` ({}, {}) to {output}: {bytes} bytes",
        env.name,
        source.kind(),
        source.label
    ));
    if printer.is_json() && args.output.is_some() {
        printer.json(&ExportReport {
            environment: &env.name,
            backend: source.kind(),
            output,
            bytes,
        })?;
    }
    Ok(ExitStatus::Success)
}

/// Why a source is dumped, for the wording of refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Export,
    Pull,
}

pub(super) enum SourceKind {
    /// An existing database file.
    Sqlite(PathBuf),
    D1(D1Backend),
}

/// An environment opened for dumping: a local file that exists, or a confirmed D1 database.
pub(super) struct Source<'a> {
    pub(super) env: &'a Environment,
    pub(super) kind: SourceKind,
    /// The path, or `name uuid` as Cloudflare reports them.
    pub(super) label: String,
}

/// One row of `sqlite_schema`.
struct SchemaObject {
    kind: String,
    name: String,
    sql: String,
}

impl<'a> Source<'a> {
    pub(super) async fn open(
        context: &Context,
        registry: &Registry,
        env: &'a Environment,
    ) -> anyhow::Result<Self> {
        match &env.target {
            Target::Sqlite(target) => {
                if !target.path.is_file() {
                    return Err(UserError::new(
                        format!(
                            "env `{}` has no database yet: `{}` does not exist",
                            env.name,
                            display_path(&target.path)
                        ),
                        format!(
                            "create it with `d1ctl apply {}`, or check its `path` in environments.toml",
                            env.name
                        ),
                    )
                    .into());
                }
                Ok(Self {
                    env,
                    kind: SourceKind::Sqlite(target.path.clone()),
                    label: display_path(&target.path),
                })
            }
            Target::D1(_) => {
                let backend = context.d1_backend(registry, env)?;
                let identity = backend.describe().await.with_context(|| {
                    format!("could not confirm the database of env `{}`", env.name)
                })?;
                Ok(Self {
                    env,
                    kind: SourceKind::D1(backend),
                    label: identity.label,
                })
            }
        }
    }

    pub(super) fn kind(&self) -> BackendKind {
        match self.kind {
            SourceKind::Sqlite(_) => BackendKind::Sqlite,
            SourceKind::D1(_) => BackendKind::D1,
        }
    }

    /// Every row of `sqlite_schema` with its SQL, in creation order.
    async fn objects(&self) -> anyhow::Result<Vec<SchemaObject>> {
        const SQL: &str =
            "SELECT type, name, sql FROM sqlite_schema WHERE sql NOT NULL ORDER BY rowid";
        match &self.kind {
            SourceKind::Sqlite(path) => tokio::task::block_in_place(|| {
                let connection = open_read_only(path)?;
                let mut statement = connection.prepare(SQL)?;
                let objects = statement
                    .query_map([], |row| {
                        Ok(SchemaObject {
                            kind: row.get(0)?,
                            name: row.get(1)?,
                            sql: row.get(2)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(objects)
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
    /// failed export (workers-sdk #9519).
    pub(super) async fn check(
        &self,
        context: &Context,
        options: &DumpOptions,
        purpose: Purpose,
    ) -> anyhow::Result<()> {
        let objects = match self.objects().await {
            Ok(objects) => objects,
            Err(error) => {
                // The export itself still refuses what it must; only the early check is lost.
                context.printer.detail(&format!(
                    "could not list the tables of `{}` before exporting: {error:#}",
                    self.env.name
                ));
                return Ok(());
            }
        };
        for name in &options.tables {
            if !objects.iter().any(|object| &object.name == name) {
                context.printer.warning(&format!(
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
            Err(self.virtual_table_error(&refused, &objects, purpose))
        }
    }

    /// The refusal of a dump with virtual tables, naming them and what does work.
    fn virtual_table_error(
        &self,
        refused: &[&str],
        objects: &[SchemaObject],
        purpose: Purpose,
    ) -> anyhow::Error {
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
        };
        UserError::new(message, hint).into()
    }

    /// Turns a failed local dump into the error the user sees.
    fn dump_error(&self, error: DumpError, purpose: Purpose) -> anyhow::Error {
        match error {
            DumpError::VirtualTable { table } => {
                self.virtual_table_error(&[table.as_str()], &[], purpose)
            }
            other => anyhow::Error::new(other).context(format!(
                "could not dump env `{}` ({})",
                self.env.name, self.label
            )),
        }
    }

    /// Dumps the source into `destination` (created or truncated); returns the dump's size.
    pub(super) async fn dump_to_file(
        &self,
        context: &Context,
        options: &DumpOptions,
        destination: &Path,
        purpose: Purpose,
    ) -> anyhow::Result<u64> {
        match &self.kind {
            SourceKind::Sqlite(path) => tokio::task::block_in_place(|| {
                let file = fs_err::File::create(destination)?;
                let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
                let bytes = dump_file(path, options, &mut out)
                    .map_err(|error| self.dump_error(error, purpose))?;
                out.flush()?;
                Ok(bytes)
            }),
            SourceKind::D1(backend) => {
                let spinner = Spinner::new(&context.printer, &self.env.name);
                let on_poll = |messages: &[String]| spinner.poll(messages);
                let result = backend
                    .client()
                    .export(options.into(), destination, &on_poll)
                    .await;
                spinner.finish();
                result.map_err(|error| match error {
                    D1Error::Export { message } if message.contains(VIRTUAL_TABLE_MESSAGE) => {
                        self.virtual_table_error(&[], &[], purpose)
                    }
                    other => anyhow::Error::new(other).context(format!(
                        "could not export env `{}` ({})",
                        self.env.name, self.label
                    )),
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

/// The spinner shown on stderr while D1 prepares an export; each poll's messages become its
/// text (and `-v` detail lines).
struct Spinner<'a> {
    bar: ProgressBar,
    printer: &'a Printer,
}

impl<'a> Spinner<'a> {
    fn new(printer: &'a Printer, env: &str) -> Self {
        // With `-v` the poll messages and request logs are lines of their own instead.
        let target = if printer.verbose() {
            ProgressDrawTarget::hidden()
        } else {
            printer.progress_target()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("exporting `{env}`"));
        bar.set_message("starting the export");
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar, printer }
    }

    fn poll(&self, messages: &[String]) {
        for message in messages {
            self.bar.suspend(|| self.printer.detail(message));
            self.bar.set_message(message.clone());
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `.d1ctl/tmp/` beside environments.toml, created on demand.
pub(super) fn tmp_dir(registry: &Registry) -> anyhow::Result<PathBuf> {
    let dir = registry.root.join(".d1ctl").join("tmp");
    fs_err::create_dir_all(&dir)?;
    Ok(dir)
}

/// A file with a unique name, removed when dropped unless persisted.
pub(super) struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Reserves `dir/<prefix>-<uuid>.<extension>` (the file is created by whoever writes it).
    pub(super) fn new(dir: &Path, prefix: &str, extension: &str) -> Self {
        Self {
            path: dir.join(format!(
                "{prefix}-{}.{extension}",
                uuid::Uuid::new_v4().simple()
            )),
            keep: false,
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `to` (atomically when both are on one file system).
    pub(super) fn persist(mut self, to: &Path) -> anyhow::Result<()> {
        fs_err::rename(&self.path, to)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep && self.path.exists() {
            // Best effort: a leftover temp file is harmless and named as ours.
            let _ = fs_err::remove_file(&self.path);
        }
    }
}

/// Writes bytes to stdout through the printer, in chunks that end at a line break (the printer
/// writes text and ends what it writes with a line break).
struct PrinterSink<'a> {
    printer: &'a Printer,
    buffer: Vec<u8>,
}

impl<'a> PrinterSink<'a> {
    const CHUNK: usize = 256 * 1024;

    fn new(printer: &'a Printer) -> Self {
        Self {
            printer,
            buffer: Vec::with_capacity(Self::CHUNK + 4096),
        }
    }

    fn emit(&mut self, end: usize) -> std::io::Result<()> {
        let text = std::str::from_utf8(&self.buffer[..end]).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the dump is not UTF-8")
        })?;
        self.printer.data(text)?;
        self.buffer.drain(..end);
        Ok(())
    }

    /// Writes what is left (the dump's last line gets a line break).
    fn finish(mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            self.emit(self.buffer.len())
        }
    }
}

impl Write for PrinterSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= Self::CHUNK
            && let Some(last) = self.buffer.iter().rposition(|&byte| byte == b'\n')
        {
            self.emit(last + 1)?;
        }
        Ok(bytes.len())
    }

    /// Chunks are written at line breaks only; `finish` writes the rest.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies a file to stdout through the printer, in chunks.
fn copy_to_printer(path: &Path, printer: &Printer) -> anyhow::Result<()> {
    let mut file = fs_err::File::open(path)?;
    let mut sink = PrinterSink::new(printer);
    std::io::copy(&mut file, &mut sink)?;
    sink.finish()?;
    Ok(())
}
