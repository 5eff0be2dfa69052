//! Progress of work over a fleet's members: a bar with done / failed / remaining, the requests
//! used of the budget and the time left; and the question between rollout waves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::printer::Printer;
use crate::core::fleet::rollout::{MemberOutcome, MemberReport, RolloutReporter, Tally};
use crate::core::fleet::survey::SurveyProgress;
use crate::d1::budget::Budget;

pub(crate) struct FleetProgress {
    bar: ProgressBar,
    printer: Printer,
    budget: Arc<Budget>,
    /// Requests sent before this work began (listing the fleet, reading the source).
    sent_before: u64,
    started: Instant,
    /// `--yes`: waves go on without asking while none failed.
    yes: bool,
    env: String,
}

impl FleetProgress {
    pub(crate) fn new(
        printer: &Printer,
        what: &str,
        env: &str,
        budget: Arc<Budget>,
        yes: bool,
    ) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), printer.progress_target());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:24}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_owned());
        Self {
            bar,
            printer: printer.clone(),
            sent_before: budget.sent(),
            budget,
            started: Instant::now(),
            yes,
            env: env.to_owned(),
        }
    }

    fn begin(&self, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    /// `12 failed · 340 requests of 1200/5m · ~3m left`.
    #[expect(
        clippy::cast_precision_loss,
        reason = "a time estimate: counts stay far below 2^52"
    )]
    fn status(&self, done: usize, total: usize, failed: usize) -> String {
        let requests = self.budget.sent() - self.sent_before;
        let mut text = format!(
            "{failed} failed · {requests} requests of {}",
            self.budget.rate()
        );
        if done > 0 && done < total {
            let elapsed = self.started.elapsed().as_secs_f64();
            let per_member = elapsed / done as f64;
            // Whichever is slower: the pace so far, or what the budget allows for the rest.
            let by_budget = (requests as f64 / done as f64) * (total - done) as f64
                / self.budget.rate().per_second();
            let left = (per_member * (total - done) as f64).max(by_budget);
            text.push_str(&format!(
                " · ~{} left",
                words_for(Duration::from_secs_f64(left))
            ));
        }
        text
    }
}

#[expect(clippy::cast_precision_loss, reason = "hours to one decimal")]
fn words_for(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 90 {
        format!("{seconds}s")
    } else if seconds < 90 * 60 {
        format!("{}m", seconds.div_ceil(60))
    } else {
        format!("{:.1}h", seconds as f64 / 3600.0)
    }
}

impl SurveyProgress for FleetProgress {
    fn started(&self, members: usize) {
        self.begin(members);
    }

    fn read_one(&self) {
        self.bar.inc(1);
        let done = usize::try_from(self.bar.position()).unwrap_or(usize::MAX);
        let total = usize::try_from(self.bar.length().unwrap_or(0)).unwrap_or(usize::MAX);
        self.bar.set_message(self.status(done, total, 0));
    }

    fn finished(&self) {
        self.bar.finish_and_clear();
    }
}

impl RolloutReporter for FleetProgress {
    fn started(&self, total: usize) {
        self.begin(total);
    }

    fn member(&self, report: &MemberReport, tally: &Tally) {
        self.bar.set_position(tally.finished() as u64);
        self.bar
            .set_message(self.status(tally.finished(), tally.total, tally.failed));
        if matches!(
            report.outcome,
            MemberOutcome::Failed | MemberOutcome::Refused
        ) {
            let what = if report.outcome == MemberOutcome::Failed {
                "failed"
            } else {
                "refused"
            };
            self.bar.suspend(|| {
                self.printer.warning(&format!(
                    "{} {what}: {}",
                    report.name,
                    report.reason.as_deref().unwrap_or("no reason given")
                ));
            });
        }
    }

    fn wave_done(&self, done: usize, next: usize, tally: &Tally) -> bool {
        let summary = format!(
            "{done} of {} members done ({} promoted, {} up to date, {} refused); the next wave takes {next} more",
            tally.total, tally.promoted, tally.up_to_date, tally.refused
        );
        self.bar.suspend(|| {
            if self.yes {
                self.printer.message(&format!("{summary}; going on (`--yes`)"));
                return true;
            }
            match crate::cli::prompt::ask(
                &self.printer,
                &format!("{summary}. Type `{}` to go on:", self.env),
                &self.env,
            ) {
                Ok(crate::cli::prompt::Answer::Confirmed) => true,
                Ok(crate::cli::prompt::Answer::Refused) | Err(_) => {
                    self.printer.message(&format!("{summary}; stopped here"));
                    false
                }
                Ok(crate::cli::prompt::Answer::NoTerminal) => {
                    self.printer.message(&format!(
                        "{summary}; stopped: no terminal to confirm the next wave on (rerun with `--yes` to go on)"
                    ));
                    false
                }
            }
        })
    }

    fn finished(&self, _tally: &Tally) {
        self.bar.finish_and_clear();
    }
}
