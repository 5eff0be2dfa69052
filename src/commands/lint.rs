//! `d1ctl lint [--to ENV] [FILES...]`: D1-aware findings with rule codes, lines and fixes.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;

use crate::backend::{Statement, Value};
use crate::cli::LintArgs;
use crate::cli::printer::Style;
use crate::commands::{Context, ExitStatus, UserError, display_path, plural, read_ledgers};
use crate::core::ledger::{self, Ledgers, State};
use crate::core::lint::{self, Finding, Severity};
use crate::core::migrations::MigrationSet;
use crate::core::sql::quote_identifier;

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

    let mut target = None;
    let targets: Vec<&str> =
        if !args.files.is_empty() {
            args.files
                .iter()
                .map(|file| {
                    let name = std::path::Path::new(file)
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or(file);
                    set.get(name).map(|m| m.name.as_str()).ok_or_else(|| {
                    UserError::new(
                        format!("`{file}` is not a migration of `{}`", display_path(&set.dir)),
                        "name files of the migrations folder, or run `d1ctl lint` for all of them",
                    )
                })
                })
                .collect::<Result<_, _>>()?
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
    let errors = findings.iter().filter(|f| f.blocks()).count();
    let waived = findings.iter().filter(|f| f.waived.is_some()).count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning && f.waived.is_none())
        .count();
    if context.printer.is_json() {
        context.printer.json(&LintReport {
            migrations: targets,
            findings: &findings,
            errors,
            warnings,
            waived,
        })?;
    } else {
        let mut out = String::new();
        for finding in &findings {
            out.push_str(&render(context, &set, finding));
        }
        out.push_str(&format!(
            "{} linted: {}, {}, {} waived",
            plural(targets.len(), "migration"),
            plural(errors, "error"),
            plural(warnings, "warning"),
            waived
        ));
        context.printer.data(&out)?;
    }
    Ok(if errors > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
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
