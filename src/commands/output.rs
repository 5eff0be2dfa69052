//! Words and shapes the commands print with.

use std::path::Path;

use crate::backend::BackendKind;
use crate::cli::printer::{Printer, Style};
use crate::commands::{BASE_URL_VARIABLE, Context};
use crate::core::registry::Environment;

impl Context {
    /// Prints what an apply did: recovered (lost response, committed) and applied migrations.
    pub(crate) fn report_applied(
        &self,
        outcome: &crate::core::write::migrate::Migrated,
        env: &str,
    ) {
        if !outcome.adopted.is_empty() {
            self.printer.detail(&format!(
                "recorded {} already applied by another tool in the ledgers that lacked them",
                plural(outcome.adopted.len(), "migration")
            ));
        }
        for name in &outcome.recovered {
            self.printer.warning(&format!(
                "the response for `{name}` was lost; `{env}`'s ledger shows it committed, so it is applied"
            ));
        }
        for applied in &outcome.applied {
            self.printer.message(&format!(
                "{} {} ({}, {} ms)",
                self.printer.paint(Style::Green, "applied"),
                applied.name,
                plural(applied.statements, "statement"),
                applied.duration_ms
            ));
        }
    }

    /// The one line every command that writes prints first: which database it is, whether it
    /// is the bundled simulator, and where `CLOUDFLARE_API_BASE_URL` sends it.
    pub(crate) fn target_line(
        &self,
        env: &Environment,
        kind: BackendKind,
        identity: &str,
    ) -> String {
        format!(
            "{} {}{} ({kind}, {identity}{}{})",
            self.printer.paint(Style::Bold, "target:"),
            self.printer.paint(Style::Cyan, &env.name),
            simulator_mark(env),
            if env.protected { ", protected" } else { "" },
            Self::redirect_of(env)
                .map(|url| format!(", API redirected by {BASE_URL_VARIABLE} to {url}"))
                .unwrap_or_default()
        )
    }
}

/// Prints a migration session's failure: what failed, then what the target holds as read
/// back from it after the failure (never assumed), the hint, and the rollback command when
/// anything may have been written.
pub(crate) fn write_failure(
    context: &Context,
    env: &str,
    failure: &crate::core::write::Failure<crate::core::write::migrate::AfterFailure>,
    hint: &str,
    rollback: Option<&str>,
) -> Vec<String> {
    use crate::core::write::{FailureKind, UnitFailure};
    let printer = &context.printer;
    let (migration, not_attempted) = match &failure.unit {
        UnitFailure::Migration(detail) => (
            Some(detail.migration.as_str()),
            detail.not_attempted.clone(),
        ),
        UnitFailure::Other { .. } => (None, Vec::new()),
    };
    let headline = match (failure.kind, migration) {
        (FailureKind::LeaseLost, Some(name)) => format!(
            "the lock on `{env}` was lost (its lease expired or another session took it) before `{name}` ran; its unit was aborted by the lease guard"
        ),
        (FailureKind::LeaseLost, None) => {
            format!("the lock on `{env}` was lost; the unit was aborted by the lease guard")
        }
        _ => failure.unit.headline(),
    };
    printer.error(&headline, None);
    let mut lines = vec![headline];
    let state = match &failure.after {
        Ok(after) => {
            let committed = migration.is_some_and(|name| after.applied.iter().any(|a| a == name));
            let mut text = format!(
                "`{env}` now has {} applied{}",
                plural(after.applied.len(), "migration"),
                after
                    .applied
                    .last()
                    .map_or_else(String::new, |last| format!(" (the last is `{last}`)")),
            );
            if let Some(name) = migration {
                text.push_str(&match (committed, failure.kind) {
                    (true, _) => format!("; `{name}` is recorded as applied (its unit committed)"),
                    (false, FailureKind::OutcomeUnknown) => format!(
                        "; the response was lost, and the ledger shows `{name}` did not commit, so nothing of it ran"
                    ),
                    (false, _) => format!("; `{name}` was rolled back and left no trace"),
                });
            }
            if !not_attempted.is_empty() {
                text.push_str(&format!("; not attempted: {}", not_attempted.join(", ")));
            }
            text.push_str(&format!(
                "\nits tables and views now: {}",
                if after.tables.is_empty() {
                    "none".to_owned()
                } else {
                    after.tables.join(", ")
                }
            ));
            text
        }
        Err(error) => format!(
            "could not re-read `{env}` after the failure ({error}): whether it committed is unknown; `d1ctl status {env}` shows it"
        ),
    };
    printer.message(&state);
    lines.push(state);
    // A lost lease says nothing about the migration's text: the hint is about the lock.
    let lease_hint;
    let hint = if failure.kind == FailureKind::LeaseLost {
        lease_hint = format!(
            "the migration is not at fault: `d1ctl lock status {env}` shows who holds the lock now; run the command again once it is free"
        );
        &lease_hint
    } else {
        hint
    };
    printer.message(&format!("\n{}: {hint}", printer.paint(Style::Cyan, "hint")));
    if let Some(rollback) = rollback {
        printer.message(&format!(
            "{}: {rollback}",
            printer.paint(Style::Cyan, "rollback")
        ));
    }
    lines
}

/// `42 s`, `5 min`, `3 h`, `2 days`.
pub(crate) fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    }
}

/// `1 migration`, `2 migrations`.
pub(crate) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else if noun.ends_with("ch") || noun.ends_with('s') || noun.ends_with('x') {
        format!("{count} {noun}es")
    } else {
        format!("{count} {noun}s")
    }
}

/// A unified diff of two texts, each given with its header label (`--- label`, `+++ label`),
/// three lines of context, coloured when stdout allows it.
pub(crate) fn unified_diff(printer: &Printer, old: (&str, &str), new: (&str, &str)) -> String {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(old.1, new.1);
    let mut out = format!("--- {}\n+++ {}\n", old.0, new.0);
    for group in diff.grouped_ops(3) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        out.push_str(&printer.paint_out(
            Style::Cyan,
            &format!(
                "@@ -{},{} +{},{} @@",
                first.old_range().start + 1,
                last.old_range().end - first.old_range().start,
                first.new_range().start + 1,
                last.new_range().end - first.new_range().start
            ),
        ));
        out.push('\n');
        for op in &group {
            for change in diff.iter_changes(op) {
                let (sign, style) = match change.tag() {
                    ChangeTag::Delete => ("-", Some(Style::Red)),
                    ChangeTag::Insert => ("+", Some(Style::Green)),
                    ChangeTag::Equal => (" ", None),
                };
                // A CRLF file's `\r` would only garble the terminal line.
                let line = format!("{sign}{}", change.value().trim_end_matches(['\n', '\r']));
                out.push_str(&style.map_or_else(|| line.clone(), |s| printer.paint_out(s, &line)));
                out.push('\n');
            }
        }
    }
    out
}

/// A path as the user would type it: relative to the current folder when under it.
pub(crate) fn display_path(path: &Path) -> String {
    let path = path.strip_prefix("./").unwrap_or(path);
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// ` (simulator)` after the name of an env served by the bundled simulator, so its output is
/// never mistaken for Cloudflare D1's; empty otherwise.
pub(crate) fn simulator_mark(env: &Environment) -> &'static str {
    if env.is_simulated() {
        " (simulator)"
    } else {
        ""
    }
}
