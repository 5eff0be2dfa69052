//! `d1ctl export ENV`: an environment's schema and data as SQL, in D1's dump format.
//!
//! A D1 env goes through Cloudflare's export API (polled, then downloaded); a local env is dumped
//! by d1ctl (`d1::dump`) in the same format. The machinery is `core::export`, shared with `pull`
//! and rehearsals.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::backend::BackendKind;
use crate::cli::ExportArgs;
use crate::cli::printer::Printer;
use crate::cli::reporter::ExportProgress;
use crate::commands::{Context, ExitStatus, display_path};
use crate::core::export::{Purpose, SourceKind};
use crate::core::temp::{TempFile, tmp_dir};
use crate::d1::dump::DumpOptions;

#[derive(Serialize)]
struct ExportReport<'a> {
    environment: &'a str,
    backend: BackendKind,
    simulator: bool,
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
    let source = context.open_source(&registry, env).await?;
    let progress = ExportProgress::new(printer);
    source.check(&progress, &options, Purpose::Export).await?;

    let bytes = match &args.output {
        Some(output) => {
            let dir = output
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let partial = TempFile::new(dir, ".d1ctl-export", "sql.partial");
            let bytes = source
                .dump_to_file(&progress, &options, partial.path(), Purpose::Export)
                .await?;
            partial.persist(output)?;
            bytes
        }
        None => match &source.kind {
            SourceKind::Sqlite(path) => {
                let mut sink = PrinterSink::new(printer);
                let bytes = tokio::task::block_in_place(|| {
                    source.dump_sqlite(path, &options, &mut sink, Purpose::Export)
                })?;
                sink.finish()?;
                bytes
            }
            SourceKind::D1(_) => {
                let temp = TempFile::new(&tmp_dir(&registry)?, "export", "sql");
                let bytes = source
                    .dump_to_file(&progress, &options, temp.path(), Purpose::Export)
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
            simulator: env.is_simulated(),
            output,
            bytes,
        })?;
    }
    Ok(ExitStatus::Success)
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
