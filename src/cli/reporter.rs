//! indicatif implementations of the progress traits of `core`.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::BackendKind;
use crate::cli::printer::{Printer, Style};
use crate::core::apply::ApplyReporter;
use crate::core::export::ExportReporter;
use crate::core::rehearse::{
    DataCopy, MigrationOutcome, RehearsalReporter, Rehearsed, human_bytes,
};

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

/// The spinner shown on stderr while D1 prepares an export; each poll's messages become its
/// text (and `-v` detail lines). Warnings and details of the dump go through the printer.
pub(crate) struct ExportProgress<'a> {
    printer: &'a Printer,
    spinner: Mutex<Option<ProgressBar>>,
}

impl<'a> ExportProgress<'a> {
    pub(crate) fn new(printer: &'a Printer) -> Self {
        Self {
            printer,
            spinner: Mutex::new(None),
        }
    }

    /// Runs `print` with the spinner (if any) out of the way.
    fn suspended(&self, print: impl FnOnce()) {
        match self.spinner.lock().ok().as_deref().and_then(Option::as_ref) {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl ExportReporter for ExportProgress<'_> {
    fn warning(&self, text: &str) {
        self.suspended(|| self.printer.warning(text));
    }

    fn detail(&self, text: &str) {
        self.suspended(|| self.printer.detail(text));
    }

    fn on_export_start(&self, env: &str) {
        // With `-v` the poll messages and request logs are lines of their own instead.
        let target = if self.printer.verbose() {
            ProgressDrawTarget::hidden()
        } else {
            self.printer.progress_target()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("exporting `{env}`"));
        bar.set_message("starting the export");
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut spinner) = self.spinner.lock() {
            *spinner = Some(bar);
        }
    }

    fn on_export_poll(&self, messages: &[String]) {
        if let Ok(spinner) = self.spinner.lock() {
            for message in messages {
                match spinner.as_ref() {
                    Some(bar) => {
                        bar.suspend(|| self.printer.detail(message));
                        bar.set_message(message.clone());
                    }
                    None => self.printer.detail(message),
                }
            }
        }
    }

    fn on_export_done(&self) {
        if let Some(bar) = self
            .spinner
            .lock()
            .ok()
            .and_then(|mut spinner| spinner.take())
        {
            bar.finish_and_clear();
        }
    }
}

/// A rehearsal's progress: the copy and each migration as lines on stderr, D1's export through
/// [`ExportProgress`].
pub(crate) struct RehearsalProgress<'a> {
    printer: &'a Printer,
    export: ExportProgress<'a>,
}

impl<'a> RehearsalProgress<'a> {
    pub(crate) fn new(printer: &'a Printer) -> Self {
        Self {
            printer,
            export: ExportProgress::new(printer),
        }
    }
}

impl ExportReporter for RehearsalProgress<'_> {
    fn warning(&self, text: &str) {
        self.export.warning(text);
    }

    fn detail(&self, text: &str) {
        self.export.detail(text);
    }

    fn on_export_start(&self, env: &str) {
        self.export.on_export_start(env);
    }

    fn on_export_poll(&self, messages: &[String]) {
        self.export.on_export_poll(messages);
    }

    fn on_export_done(&self) {
        self.export.on_export_done();
    }
}

impl RehearsalReporter for RehearsalProgress<'_> {
    fn on_copy_start(&self, env: &str, kind: BackendKind, size_bytes: Option<u64>) {
        self.printer.message(&format!(
            "copying `{env}` ({kind}{}) to a temp file under `.d1ctl/tmp`",
            size_bytes.map_or_else(String::new, |size| format!(", {}", human_bytes(size)))
        ));
    }

    fn on_copy_done(&self, copy: &DataCopy) {
        self.printer.message(&format!(
            "copied ({}, {}, {} ms)",
            copy.method.replace('_', " "),
            human_bytes(copy.bytes),
            copy.duration_ms
        ));
    }

    fn on_migration_done(&self, migration: &Rehearsed) {
        let word = match migration.outcome {
            MigrationOutcome::Applied => self.printer.paint(Style::Green, "rehearsed"),
            MigrationOutcome::Failed => self.printer.paint(Style::Red, "failed"),
            MigrationOutcome::RolledBack => "rolled back".to_owned(),
            MigrationOutcome::NotAttempted => "not attempted".to_owned(),
        };
        self.printer.message(&format!(
            "{word} {} ({} statement{}, {} ms)",
            migration.name,
            migration.statements,
            if migration.statements == 1 { "" } else { "s" },
            migration.duration_ms.unwrap_or_default()
        ));
    }
}

/// How a command shows its plan (`true`: a new plan made under the lock).
type ShowPlan<'a, P> = Box<dyn Fn(&P, bool) + Send + Sync + 'a>;

/// The terminal side of a write session: apply's bar, plus how the command shows its plan and
/// what runs before the lock.
pub(crate) struct WriteProgress<'a, P> {
    apply: ApplyProgress,
    printer: &'a Printer,
    /// The command to rerun with `--yes`, for the confirmation's hint.
    rerun: String,
    show: ShowPlan<'a, P>,
    before: Box<dyn Fn() -> bool + Send + Sync + 'a>,
}

impl<'a, P> WriteProgress<'a, P> {
    pub(crate) fn new(
        printer: &'a Printer,
        env: &str,
        rerun: String,
        show: impl Fn(&P, bool) + Send + Sync + 'a,
    ) -> Self {
        Self {
            apply: ApplyProgress::new(printer, env),
            printer,
            rerun,
            show: Box::new(show),
            before: Box::new(|| true),
        }
    }

    pub(crate) fn before(mut self, before: impl Fn() -> bool + Send + Sync + 'a) -> Self {
        self.before = Box::new(before);
        self
    }
}

impl<P> ApplyReporter for WriteProgress<'_, P> {
    fn on_start(&self, total: usize) {
        self.apply.on_start(total);
    }

    fn on_migration_start(&self, name: &str) {
        self.apply.on_migration_start(name);
    }

    fn on_migration_done(&self, name: &str, elapsed: Duration) {
        self.apply.on_migration_done(name, elapsed);
    }

    fn on_finish(&self) {
        self.apply.on_finish();
    }

    fn on_warning(&self, message: &str) {
        self.apply.on_warning(message);
    }
}

impl<P> crate::core::write::WriteReporter<P> for WriteProgress<'_, P> {
    fn show_plan(&self, plan: &P, changed: bool) {
        if changed {
            self.printer
                .warning("the target changed between the plan and the lock; this is the plan now:");
        }
        (self.show)(plan, changed);
    }

    fn confirm(&self, env: &crate::core::registry::Environment, why: &str, yes: bool) -> bool {
        crate::cli::prompt::confirm(self.printer, &env.name, why, yes, &self.rerun)
    }

    fn before_write(&self) -> bool {
        (self.before)()
    }

    fn took_over(&self, lease: &crate::core::lock::Lease) {
        self.printer.warning(&format!(
            "took over the lock of {} (pid {} on this host, which no longer runs)",
            lease.holder.id, lease.holder.pid
        ));
    }

    fn rollback_point(&self, point: &crate::backend::RollbackPoint) {
        self.printer
            .message(&format!("rollback point: {} {}", point.kind, point.point));
    }
}

/// Shows the D1 client's longer waits: a spinner counting down on a terminal, one line on
/// stderr otherwise (a CI log must say why nothing happens for a minute).
pub(crate) struct WaitProgress {
    printer: Printer,
    spinner: Mutex<Option<ProgressBar>>,
}

impl WaitProgress {
    pub(crate) fn new(printer: &Printer) -> Self {
        Self {
            printer: printer.clone(),
            spinner: Mutex::new(None),
        }
    }
}

fn wait_message(left: Duration, reason: &str) -> String {
    format!("waiting {} s: {reason}", left.as_secs_f64().ceil())
}

impl crate::d1::client::WaitReporter for WaitProgress {
    fn wait_started(&self, total: Duration, reason: &str) {
        if !self.printer.stderr_is_terminal() {
            self.printer.message(&wait_message(total, reason));
            return;
        }
        let bar = ProgressBar::with_draw_target(None, self.printer.progress_target());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(reason.to_owned());
        bar.set_message(wait_message(total, reason));
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut spinner) = self.spinner.lock() {
            *spinner = Some(bar);
        }
    }

    fn wait_progress(&self, left: Duration) {
        if let Ok(spinner) = self.spinner.lock()
            && let Some(bar) = spinner.as_ref()
        {
            bar.set_message(wait_message(left, &bar.prefix()));
        }
    }

    fn wait_finished(&self) {
        if let Some(bar) = self
            .spinner
            .lock()
            .ok()
            .and_then(|mut spinner| spinner.take())
        {
            bar.finish_and_clear();
        }
    }
}
