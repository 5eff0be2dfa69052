//! d1ctl: carries SQL migrations for Cloudflare D1 from a laptop to production, one rung at a time.

use std::process::ExitCode;

use clap::Parser;

pub mod backend;
mod cli;
pub mod clock;
mod commands;
pub mod core;
pub mod credentials;
pub mod d1;
pub mod local;
pub mod sim;

pub use commands::ExitStatus;

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let printer = cli::printer::Printer::new(&cli.global, no_color);
    if printer.verbose() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(printer.stderr_color())
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                if printer.http_traces() {
                    "d1ctl=debug,d1ctl::http=debug"
                } else {
                    "d1ctl=debug,d1ctl::http=off"
                },
            ))
            .with_target(false)
            .try_init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            printer.error(&format!("cannot start the async runtime: {error}"), None);
            return ExitStatus::Error.into();
        }
    };
    let status = runtime.block_on(commands::run(cli, printer));
    // Do not wait for background tasks (e.g. idle HTTP connections) before exiting.
    runtime.shutdown_background();
    status.into()
}
