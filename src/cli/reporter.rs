//! indicatif implementations of the progress traits of `core`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::printer::Printer;
use crate::core::apply::ApplyReporter;

/// A bar over the migrations being applied; invisible when stderr is not a terminal or `-q`.
pub(crate) struct ApplyProgress {
    bar: ProgressBar,
    printer: Printer,
}

impl ApplyProgress {
    pub(crate) fn new(printer: &Printer, env: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), printer.progress_target());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:24}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("applying to {env}"));
        Self {
            bar,
            printer: printer.clone(),
        }
    }
}

impl ApplyReporter for ApplyProgress {
    fn on_start(&self, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }

    fn on_migration_start(&self, name: &str) {
        self.bar.set_message(name.to_owned());
    }

    fn on_migration_done(&self, _name: &str, _elapsed: Duration) {
        self.bar.inc(1);
    }

    fn on_finish(&self) {
        self.bar.finish_and_clear();
    }

    fn on_warning(&self, message: &str) {
        self.bar.suspend(|| self.printer.warning(message));
    }
}

/// A bar over work items (environments read, …); invisible when stderr is not a terminal or `-q`.
pub(crate) struct Counter {
    bar: ProgressBar,
}

impl Counter {
    pub(crate) fn new(printer: &Printer, what: &str, total: usize) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total as u64), printer.progress_target());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:24}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_owned());
        Self { bar }
    }

    pub(crate) fn inc(&self) {
        self.bar.inc(1);
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
