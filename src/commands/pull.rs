//! `d1ctl pull ENV --into LOCAL_ENV`: replace a local SQLite env with a copy of another env's
//! schema and data ("sync from production").
//!
//! The source is dumped in D1's format (the export API for D1, d1ctl's dumper for SQLite), the
//! dump is executed into a new file beside the target, the target's previous file is kept under
//! `.d1ctl/backups/`, and the new file is renamed over it. The dump carries the ledger tables, so
//! the target's ledgers end up as the source's.

use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::backend::BackendKind;
use crate::cli::PullArgs;
use crate::cli::printer::Style;
use crate::cli::reporter::ExportProgress;
use crate::commands::{Context, ExitStatus, UserError, display_path, plural};
use crate::core::clock::iso8601_now;
use crate::core::export::Purpose;
use crate::core::ledger::{D1CTL_TABLE, DRIZZLE_TABLE};
use crate::core::registry::{Environment, Registry, Target};
use crate::core::temp::{TempFile, tmp_dir};
use crate::d1::dump::DumpOptions;
use crate::local::dump::{load, open_read_only};

#[derive(Serialize)]
struct PullReport<'a> {
    source: &'a str,
    target: &'a str,
    /// Where the target's previous file was kept; `null` when there was none.
    backup: Option<String>,
    /// Tables in the new file (ledgers included, SQLite's own left out).
    tables: usize,
    /// Size of the dump that was loaded.
    bytes: u64,
}

pub(crate) async fn pull(args: PullArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let printer = &context.printer;
    let registry = context.registry()?;
    let source_env = registry.resolve(&args.environment)?;
    let target_env = registry.resolve(&args.into)?;
    let target_path = check_target(source_env, target_env)?;
    printer.message(&context.target_line(
        target_env,
        BackendKind::Sqlite,
        &display_path(&target_path),
    ));

    let source = context.open_source(&registry, source_env).await?;
    printer.message(&format!(
        "{} {}{} ({}, {}{})",
        printer.paint(Style::Bold, "source:"),
        printer.paint(Style::Cyan, &source_env.name),
        crate::commands::simulator_mark(source_env),
        source.kind(),
        source.label,
        if source_env.protected {
            ", protected"
        } else {
            ""
        }
    ));

    let with_data = tokio::task::block_in_place(|| tables_with_rows(&target_path, &registry))?;
    if !with_data.is_empty() && !args.yes {
        confirm(context, target_env, source_env, &target_path, &with_data)?;
    }

    let options = DumpOptions::default();
    let progress = ExportProgress::new(printer);
    source.check(&progress, &options, Purpose::Pull).await?;
    let dump = TempFile::new(
        &tmp_dir(&registry)?,
        &format!("pull-{}", file_safe(&source_env.name)),
        "sql",
    );
    let bytes = source
        .dump_to_file(&progress, &options, dump.path(), Purpose::Pull)
        .await?;
    printer.detail(&format!(
        "dumped `{}` ({bytes} bytes) to `{}`",
        source_env.name,
        display_path(dump.path())
    ));

    let report = tokio::task::block_in_place(|| {
        let (building, tables) = build(dump.path(), &target_path, context)?;
        let backup = if target_path.exists() {
            let backup = backup(&target_path, target_env, &registry)?;
            printer.message(&format!(
                "kept the previous `{}` as `{}`",
                target_env.name,
                display_path(&backup)
            ));
            Some(backup)
        } else {
            None
        };
        release_journal(&target_path)?;
        building.persist(&target_path).with_context(|| {
            format!(
                "could not move the new database over `{}`",
                display_path(&target_path)
            )
        })?;
        anyhow::Ok(PullReport {
            source: &source_env.name,
            target: &target_env.name,
            backup: backup.as_deref().map(display_path),
            tables,
            bytes,
        })
    })?;
    drop(dump);

    if printer.is_json() {
        printer.json(&report)?;
    }
    printer.message(&format!(
        "{} copied `{}` into `{}`: {} ({bytes} bytes of SQL)",
        printer.paint(Style::Green, "done:"),
        source_env.name,
        target_env.name,
        plural(report.tables, "table"),
    ));
    Ok(ExitStatus::Success)
}

/// The target must be a different, unprotected, local env; returns its file.
fn check_target(source: &Environment, target: &Environment) -> anyhow::Result<PathBuf> {
    if source.name == target.name {
        return Err(UserError::new(
            format!("`pull` needs two different envs; both name `{}`", source.name),
            "name the env to copy from first and the local env to copy into with `--into`, e.g. `d1ctl pull prod --into local`",
        )
        .into());
    }
    let Target::Sqlite(sqlite) = &target.target else {
        return Err(UserError::new(
            format!(
                "env `{}` is a d1 env; `pull` writes only into local (`backend = \"sqlite\"`) envs",
                target.name
            ),
            "to copy data into D1, `d1ctl export` it and import the file with `wrangler d1 execute --remote --file`",
        )
        .into());
    };
    if target.protected {
        return Err(UserError::new(
            format!(
                "env `{}` is protected; `pull` does not overwrite protected environments",
                target.name
            ),
            "pull into an unprotected local env, or remove `protected = true` from it in environments.toml",
        )
        .into());
    }
    if let Target::Sqlite(from) = &source.target
        && same_file(&from.path, &sqlite.path)
    {
        return Err(UserError::new(
            format!(
                "envs `{}` and `{}` are the same file `{}`",
                source.name,
                target.name,
                display_path(&sqlite.path)
            ),
            "check their `path` / `wrangler_database_id` in environments.toml",
        )
        .into());
    }
    Ok(sqlite.path.clone())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs_err::canonicalize(a), fs_err::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The target's own tables that hold at least one row: the ledgers, d1ctl's bookkeeping and
/// SQLite's and Cloudflare's internal tables do not count. A table that cannot be read counts.
fn tables_with_rows(path: &Path, registry: &Registry) -> anyhow::Result<Vec<String>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let connection = open_read_only(path).with_context(|| {
        format!(
            "could not open `{}` to see what it holds",
            display_path(path)
        )
    })?;
    let tables: Vec<(String, String)> = connection
        .prepare(
            "SELECT name, coalesce(sql, '') FROM sqlite_schema WHERE type = 'table' ORDER BY rowid",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let virtual_tables: Vec<&str> = tables
        .iter()
        .filter(|(_, sql)| sql.starts_with("CREATE VIRTUAL TABLE"))
        .map(|(name, _)| name.as_str())
        .collect();
    let mut with_rows = Vec::new();
    for (name, _) in &tables {
        let lower = name.to_ascii_lowercase();
        let bookkeeping = lower.starts_with("sqlite_")
            || lower.starts_with("_cf_")
            || lower.starts_with("_d1ctl_")
            || name == D1CTL_TABLE
            || name == DRIZZLE_TABLE
            || name == &registry.project.ledger
            || virtual_tables.iter().any(|vt| {
                name.strip_prefix(vt)
                    .is_some_and(|rest| rest.starts_with('_'))
            });
        if bookkeeping {
            continue;
        }
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM \"{}\")",
            name.replace('"', "\"\"")
        );
        let has_rows = connection
            .query_row(&sql, [], |row| row.get::<_, bool>(0))
            .unwrap_or(true);
        if has_rows {
            with_rows.push(name.clone());
        }
    }
    Ok(with_rows)
}

/// Asks before replacing a target with data: only on a terminal, by typing the env's name.
fn confirm(
    context: &Context,
    target: &Environment,
    source: &Environment,
    path: &Path,
    with_data: &[String],
) -> anyhow::Result<()> {
    let printer = &context.printer;
    let shown: Vec<String> = with_data.iter().take(8).map(|t| format!("`{t}`")).collect();
    let more = if with_data.len() > shown.len() {
        format!(" and {} more", with_data.len() - shown.len())
    } else {
        String::new()
    };
    let what = format!(
        "env `{}` (`{}`) holds rows in {} ({}{more}); `pull` replaces the whole file with `{}`'s data",
        target.name,
        display_path(path),
        plural(with_data.len(), "table"),
        shown.join(", "),
        source.name
    );
    // The question needs someone at a terminal who can see it (stderr shown, not `--quiet`).
    let interactive = std::io::stdin().is_terminal() && !printer.progress_target().is_hidden();
    if !interactive {
        return Err(UserError::new(
            format!("{what}; not overwriting it without confirmation"),
            format!(
                "rerun with `--yes` to overwrite it (its current file is kept under `.d1ctl/backups/`): `d1ctl pull {} --into {} --yes`",
                source.name, target.name
            ),
        )
        .into());
    }
    printer.warning(&what);
    printer.message(&format!(
        "the current file will be kept under `.d1ctl/backups/`. Type `{}` to overwrite it:",
        target.name
    ));
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("could not read the confirmation")?;
    if answer.trim() == target.name {
        Ok(())
    } else {
        Err(UserError::new(
            format!("not confirmed: `{}` was left as it was", target.name),
            format!(
                "type the env name exactly (`{}`), or pass `--yes`",
                target.name
            ),
        )
        .into())
    }
}

/// Executes the dump into a new file beside the target (same folder, so the final rename is
/// atomic); returns it with its number of tables.
fn build(dump: &Path, target: &Path, context: &Context) -> anyhow::Result<(TempFile, usize)> {
    let dir = target
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let name = target
        .file_name()
        .map_or_else(|| "database".into(), |name| name.to_string_lossy());
    let building = TempFile::new(dir, &format!(".{name}.d1ctl-pull"), "tmp");
    let connection = crate::local::open(building.path())
        .with_context(|| format!("could not create `{}`", display_path(building.path())))?;
    let reader = BufReader::with_capacity(256 * 1024, fs_err::File::open(dump)?);
    let loaded =
        load(&connection, reader).context("could not load the dump into a new database")?;
    if loaded.foreign_key_violations > 0 {
        context.printer.warning(&format!(
            "{} violate a foreign key in the copy, as in the source",
            plural(
                usize::try_from(loaded.foreign_key_violations).unwrap_or(usize::MAX),
                "row"
            )
        ));
    }
    let tables: i64 = connection.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        [],
        |row| row.get(0),
    )?;
    connection
        .close()
        .map_err(|(_, error)| error)
        .context("could not close the new database")?;
    // A journal left by the load would belong to the temp name, not to the target.
    for suffix in ["-journal", "-wal", "-shm"] {
        let side = side_file(building.path(), suffix);
        if side.exists() {
            fs_err::remove_file(side)?;
        }
    }
    Ok((building, usize::try_from(tables).unwrap_or_default()))
}

/// `VACUUM INTO .d1ctl/backups/<env>-<UTC timestamp>.sqlite`: a consistent copy of the target
/// (committed WAL content included), made before anything replaces it.
fn backup(target: &Path, env: &Environment, registry: &Registry) -> anyhow::Result<PathBuf> {
    let dir = registry.root.join(".d1ctl").join("backups");
    fs_err::create_dir_all(&dir)?;
    let stamp = iso8601_now().replace([':', '.'], "-");
    let base = format!("{}-{stamp}", file_safe(&env.name));
    let mut path = dir.join(format!("{base}.sqlite"));
    let mut attempt = 1;
    while path.exists() {
        path = dir.join(format!("{base}-{attempt}.sqlite"));
        attempt += 1;
    }
    let destination = path
        .to_str()
        .context("the backup path is not valid UTF-8")?;
    let connection = open_read_only(target)
        .with_context(|| format!("could not open `{}` to back it up", display_path(target)))?;
    connection
        .execute("VACUUM INTO ?1", [destination])
        .with_context(|| {
            format!(
                "could not back up `{}` to `{}`; nothing was changed",
                display_path(target),
                display_path(&path)
            )
        })?;
    Ok(path)
}

/// Before the new file takes the target's name: the target's WAL is checkpointed and its
/// journal mode set to DELETE (which needs that no other process holds it), so no `-wal`,
/// `-shm` or hot `-journal` of the old file can be applied to the new one.
fn release_journal(target: &Path) -> anyhow::Result<()> {
    if !target.exists() {
        return Ok(());
    }
    let busy = |error: &dyn std::fmt::Display| -> anyhow::Error {
        UserError::new(
            format!(
                "could not take `{}` over: {error}; nothing was changed",
                display_path(target)
            ),
            "another process (e.g. `wrangler dev`) may have the file open; stop it and rerun",
        )
        .into()
    };
    {
        let connection = Connection::open_with_flags(
            target,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| busy(&error))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|error| busy(&error))?;
        // Reading recovers a hot journal and reads the WAL; switching to DELETE checkpoints it.
        connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|error| busy(&error))?;
        let mode: String = connection
            .query_row("PRAGMA journal_mode=DELETE", [], |row| row.get(0))
            .map_err(|error| busy(&error))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(busy(&format!("its journal mode stayed `{mode}`")));
        }
        connection.close().map_err(|(_, error)| busy(&error))?;
    }
    // Whatever is left now is stale: the old file's content is complete without it.
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = side_file(target, suffix);
        if side.exists() {
            fs_err::remove_file(&side)?;
        }
    }
    Ok(())
}

fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// An env name as part of a file name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
