//! What a data step shows while it runs: a bar of rows done (of the rows counted before it
//! ran) on a terminal, a line per batch with `-v`, and the command's output on stderr.

use std::process::Stdio;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::printer::Printer;
use crate::core::write::step::StepReporter;

pub(crate) struct StepProgress {
    bar: ProgressBar,
    printer: Printer,
}

impl StepProgress {
    pub(crate) fn new(printer: &Printer, step: &str) -> Self {
        let bar = ProgressBar::with_draw_target(None, printer.progress_target());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:24}] {pos}/{len} rows {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("step {step}"));
        Self {
            bar,
            printer: printer.clone(),
        }
    }
}

impl StepReporter for StepProgress {
    fn batch_done(&self, step: &str, rows: i64, batches: i64, estimate: Option<i64>) {
        let rows = rows.max(0).unsigned_abs();
        if let Some(estimate) = estimate {
            // Rows written while it runs can take it past the count.
            self.bar
                .set_length(estimate.max(0).unsigned_abs().max(rows));
        }
        self.bar.set_position(rows);
        self.bar.set_message(format!("{batches} batches"));
        self.bar.suspend(|| {
            self.printer.detail(&format!(
                "step `{step}`: {rows} rows done in {}{}",
                crate::commands::plural(usize::try_from(batches).unwrap_or(0), "batch"),
                estimate
                    .map(|e| format!(" (of {e} counted before it ran)"))
                    .unwrap_or_default()
            ));
        });
    }

    fn command_starts(&self, step: &str, command: &str) {
        self.printer
            .message(&format!("running step `{step}`: sh -c {command:?}"));
    }

    fn command_output(&self) -> Stdio {
        self.printer.stderr_stdio()
    }
}

impl Drop for StepProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
