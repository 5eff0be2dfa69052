//! `d1ctl lint [--to ENV] [FILES...]`: D1-aware findings with rule codes, lines and fixes;
//! `d1ctl lint --fix FILES...`: the rewrite of a rebuild that would lose rows on D1.

use std::collections::BTreeMap;

use anyhow::Context as _;
use futures::future::join_all;
use serde::Serialize;

use crate::backend::{Statement, Value};
use crate::cli::printer::Style;
use crate::cli::{Format, LintArgs};
use crate::commands::{
    Context, ExitStatus, UserError, display_path, plural, read_ledgers, unified_diff,
};
use crate::core::fix::{self, Rebuild};
use crate::core::ledger::{self, Ledgers, State};
use crate::core::lint::{self, Finding, Severity};
use crate::core::migrations::{self, Migration, MigrationSet};
use crate::core::registry::Registry;
use crate::core::schema;
use crate::core::sql::{self, quote_identifier};

#[derive(Serialize)]
struct LintReport<'a> {
    migrations: Vec<&'a str>,
    findings: &'a [Finding],
    errors: usize,
    warnings: usize,
    waived: usize,
}

pub(crate) async fn lint(args: LintArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    let set = context.migrations(&registry)?;
    let ledgers = Ledgers::new(&registry.project.ledger, set.layout);
    let ignore = ledgers.ignored_tables();

    if args.fix {
        return fix_files(&args, context, &registry, &set, &ledgers).await;
    }

    let mut target = None;
    let targets: Vec<&str> = if !args.files.is_empty() {
        named_migrations(&args.files, &set)?
    } else if let Some(name) = &args.to {
        let env = registry.resolve(name)?;
        let backend = context.backend(&registry, env)?;
        let state = read_ledgers(&ledgers, backend.as_ref(), env).await?;
        let pending: Vec<&str> = ledger::compare(&set, &state, set.layout)
            .iter()
            .filter(|s| s.state == State::Pending)
            .filter_map(|s| set.get(&s.name).map(|m| m.name.as_str()))
            .collect();
        target = Some((env, backend));
        pending
    } else {
        set.migrations.iter().map(|m| m.name.as_str()).collect()
    };

    let mut findings = lint::lint(&set.migrations, &targets, &ignore);
    let tables = lint::tables_needing_row_counts(&findings);
    if let (Some((env, backend)), false) = (&target, tables.is_empty()) {
        let rows = row_counts(backend.as_ref(), &tables)
            .await
            .with_context(|| {
                format!(
                    "could not count the rows of {} on `{}`",
                    tables.join(", "),
                    env.name
                )
            })?;
        findings = lint::with_row_counts(findings, &rows);
    }
    let tally = Tally::of(&findings);
    let path_of = |finding: &Finding| ci_path(&set, finding);
    if context.printer.format == Format::Github {
        let annotations = lint::report::github_annotations(&findings, &path_of);
        // No findings, no line: an empty line on stdout is not a command.
        if !annotations.is_empty() {
            context.printer.data(&annotations)?;
        }
        // The log shows it; the annotations alone say nothing when there are no findings.
        context.printer.message(&summary(targets.len(), &tally));
    } else if context.printer.format == Format::Sarif {
        context
            .printer
            .json(&lint::report::sarif(&findings, &path_of))?;
    } else if context.printer.is_json() {
        context.printer.json(&LintReport {
            migrations: targets,
            findings: &findings,
            errors: tally.errors,
            warnings: tally.warnings,
            waived: tally.waived,
        })?;
    } else {
        context.printer.data(&findings_text(
            context,
            &set,
            targets.len(),
            &findings,
            &tally,
        ))?;
    }
    Ok(tally.status())
}

/// What a set of findings comes to.
struct Tally {
    errors: usize,
    warnings: usize,
    waived: usize,
}

impl Tally {
    fn of(findings: &[Finding]) -> Self {
        Self {
            errors: findings.iter().filter(|f| f.blocks()).count(),
            warnings: findings
                .iter()
                .filter(|f| f.severity == Severity::Warning && f.waived.is_none())
                .count(),
            waived: findings.iter().filter(|f| f.waived.is_some()).count(),
        }
    }

    fn status(&self) -> ExitStatus {
        if self.errors > 0 {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        }
    }
}

/// Every finding, then `N migrations linted: …`.
fn findings_text(
    context: &Context,
    set: &MigrationSet,
    linted: usize,
    findings: &[Finding],
    tally: &Tally,
) -> String {
    let mut out = String::new();
    for finding in findings {
        out.push_str(&render(context, set, finding));
    }
    out.push_str(&summary(linted, tally));
    out
}

/// `N migrations linted: N errors, N warnings, N waived`.
fn summary(linted: usize, tally: &Tally) -> String {
    format!(
        "{} linted: {}, {}, {} waived",
        plural(linted, "migration"),
        plural(tally.errors, "error"),
        plural(tally.warnings, "warning"),
        tally.waived
    )
}

/// A finding's file as CI tools resolve it: relative to the working directory (the repository
/// root in a workflow), with `/` separators whatever the OS.
fn ci_path(set: &MigrationSet, finding: &Finding) -> String {
    set.get(&finding.migration)
        .map_or_else(|| finding.migration.clone(), |m| display_path(&m.path))
        .replace('\\', "/")
}

/// The migrations `files` name, by file name, in the order given.
fn named_migrations<'a>(files: &[String], set: &'a MigrationSet) -> anyhow::Result<Vec<&'a str>> {
    files
        .iter()
        .map(|file| {
            let name = std::path::Path::new(file)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(file);
            set.get(name).map(|m| m.name.as_str()).ok_or_else(|| {
                UserError::new(
                    format!(
                        "`{file}` is not a migration of `{}`",
                        display_path(&set.dir)
                    ),
                    "name files of the migrations folder, or run `d1ctl lint` for all of them",
                )
                .into()
            })
        })
        .collect()
}

#[derive(Serialize)]
struct FixReport<'a> {
    migration: &'a str,
    path: String,
    /// Whether the migration was rewritten (false: nothing to fix).
    fixed: bool,
    /// Whether the rewrite was written to the file (false with `--dry-run`).
    written: bool,
    rebuilds: &'a [Rebuild],
    diff: String,
}

#[derive(Serialize)]
struct FixLintReport<'a> {
    fixes: Vec<FixReport<'a>>,
    /// The lint of the migrations after the rewrite.
    findings: &'a [Finding],
    errors: usize,
    warnings: usize,
    waived: usize,
}

/// `lint --fix`: rewrites each named migration's rebuilds (see `core::fix`), shows the diff,
/// writes the files, and lints them again. Nothing is written unless every file can be fixed
/// and no env has applied any of them.
async fn fix_files(
    args: &LintArgs,
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    ledgers: &Ledgers,
) -> anyhow::Result<ExitStatus> {
    let targets = named_migrations(&args.files, set)?;
    refuse_applied(context, registry, set, ledgers, &targets).await?;
    let mut fixes = Vec::with_capacity(targets.len());
    for (position, migration) in set.migrations.iter().enumerate() {
        if !targets.contains(&migration.name.as_str()) {
            continue;
        }
        let earlier: Vec<&Migration> = set.migrations[..position].iter().collect();
        let before = schema::replay(&earlier).with_context(|| {
            format!(
                "could not replay the migrations before `{}`",
                migration.name
            )
        })?;
        let text = fs_err::read_to_string(&migration.path)?;
        let rewrite = fix::family_rebuild(&before, &text, set.layout).map_err(|error| {
            UserError::new(
                format!(
                    "cannot fix `{}`: {error}; nothing was written",
                    display_path(&migration.path)
                ),
                error.hint(),
            )
        })?;
        fixes.push((migration, text, rewrite));
    }

    let printer = &context.printer;
    let mut diffs = String::new();
    let mut linted = set.migrations.clone();
    for (migration, text, fixed) in &fixes {
        let path = display_path(&migration.path);
        if fixed.rebuilds.is_empty() {
            printer.message(&format!(
                "nothing to fix in `{path}`: it rebuilds no table that other tables reference"
            ));
            continue;
        }
        diffs.push_str(&unified_diff(
            printer,
            (&format!("a/{path}"), text),
            (&format!("b/{path}"), &fixed.text),
        ));
        if !args.dry_run {
            fs_err::write(&migration.path, &fixed.text)?;
        }
        for rebuild in &fixed.rebuilds {
            let copies: Vec<&str> = rebuild.copies.iter().map(|(t, _)| t.as_str()).collect();
            let referencing = match copies.as_slice() {
                [one] => format!("the table that references it, `{one}`"),
                many => format!(
                    "the {} tables that reference it ({})",
                    many.len(),
                    many.join(", ")
                ),
            };
            printer.message(&format!(
                "{} `{path}`: `{}` is rebuilt together with {referencing}{}",
                printer.paint(
                    Style::Green,
                    if args.dry_run { "would fix" } else { "fixed" }
                ),
                rebuild.table,
                if args.dry_run {
                    "; nothing written (--dry-run)"
                } else {
                    ""
                }
            ));
        }
        // The lint below reads the rewrite itself: from the file, or from memory on a dry run.
        if let Some(copy) = linted.iter_mut().find(|m| m.name == migration.name) {
            copy.statements = if copy.drizzle.is_some() {
                sql::split_drizzle_statements(&fixed.text)
            } else {
                sql::split_statements(&fixed.text, 1)
            }
            .with_context(|| format!("the rewrite of `{}`", migration.name))?;
        }
    }
    if !args.dry_run {
        linted = migrations::load(&set.dir, Some(set.layout))?.migrations;
    }
    let findings = lint::lint(&linted, &targets, &ledgers.ignored_tables());
    let tally = Tally::of(&findings);
    if printer.is_json() {
        let reports = fixes
            .iter()
            .map(|(migration, text, fixed)| FixReport {
                migration: &migration.name,
                path: display_path(&migration.path),
                fixed: !fixed.rebuilds.is_empty(),
                written: !fixed.rebuilds.is_empty() && !args.dry_run,
                rebuilds: &fixed.rebuilds,
                diff: if fixed.rebuilds.is_empty() {
                    String::new()
                } else {
                    let path = display_path(&migration.path);
                    similar::TextDiff::from_lines(text, &fixed.text)
                        .unified_diff()
                        .header(&format!("a/{path}"), &format!("b/{path}"))
                        .to_string()
                },
            })
            .collect();
        printer.json(&FixLintReport {
            fixes: reports,
            findings: &findings,
            errors: tally.errors,
            warnings: tally.warnings,
            waived: tally.waived,
        })?;
    } else {
        diffs.push_str(&findings_text(
            context,
            set,
            targets.len(),
            &findings,
            &tally,
        ));
        printer.data(&diffs)?;
    }
    Ok(tally.status())
}

/// An applied migration is immutable: every env's ledgers are read, and a migration any env has
/// applied (or may have: it cannot be read) is not rewritten.
async fn refuse_applied(
    context: &Context,
    registry: &Registry,
    set: &MigrationSet,
    ledgers: &Ledgers,
    targets: &[&str],
) -> anyhow::Result<()> {
    let environments = registry.ordered();
    let reads = join_all(environments.iter().map(|env| async move {
        let backend = context.backend(registry, env)?;
        read_ledgers(ledgers, backend.as_ref(), env).await
    }))
    .await;
    let names = targets
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    for (env, read) in environments.iter().zip(reads) {
        // The cause's own hint (credentials, network, path) says how to make it readable.
        let state = read.with_context(|| {
            format!(
                "cannot tell whether env `{}` has applied {names}: `lint --fix` rewrites only migrations no env has applied; nothing was written",
                env.name
            )
        })?;
        if let Some(applied) = ledger::compare(set, &state, set.layout)
            .iter()
            .find(|s| s.state != State::Pending && targets.contains(&s.name.as_str()))
        {
            return Err(UserError::new(
                format!(
                    "`{}` is {} on env `{}`: an applied migration is never rewritten; nothing was written",
                    applied.name,
                    if applied.state == State::Applied { "applied" } else { "recorded (with another checksum)" },
                    env.name
                ),
                "envs that ran it keep what it did: write what still has to change as a new migration (`d1ctl new NAME`, or `drizzle-kit generate`)",
            )
            .into());
        }
    }
    Ok(())
}

/// `file:line: error[DS102] message` and its fix, as compilers print them.
pub(crate) fn render(context: &Context, set: &MigrationSet, finding: &Finding) -> String {
    let printer = &context.printer;
    let file = set
        .get(&finding.migration)
        .map_or_else(|| finding.migration.clone(), |m| display_path(&m.path));
    let location = finding
        .line
        .map_or(file.clone(), |line| format!("{file}:{line}"));
    let level = match (finding.severity, &finding.waived) {
        (_, Some(_)) => printer.paint_out(Style::Dim, "waived"),
        (Severity::Error, None) => printer.paint_out(Style::Red, "error"),
        (Severity::Warning, None) => printer.paint_out(Style::Yellow, "warning"),
    };
    let mut text = format!(
        "{location}: {level}[{}] {}\n",
        finding.code, finding.message
    );
    match &finding.waived {
        Some(reason) => text.push_str(&format!("  waived: {reason}\n")),
        None => text.push_str(&format!("  fix: {}\n", finding.fix)),
    }
    text
}

async fn row_counts(
    backend: &dyn crate::backend::Backend,
    tables: &[String],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let statements: Vec<Statement> = tables
        .iter()
        .map(|table| {
            Statement::new(format!(
                "SELECT count(*) AS n FROM {}",
                quote_identifier(table)
            ))
        })
        .collect();
    let results = backend.read(&statements).await?;
    Ok(tables
        .iter()
        .zip(results)
        .map(|(table, rows)| {
            let n = rows
                .rows
                .first()
                .and_then(|row| row.first())
                .and_then(Value::as_i64)
                .unwrap_or(0);
            (table.clone(), n)
        })
        .collect())
}
