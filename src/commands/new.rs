//! `d1ctl new NAME`: create the next migration file, named as wrangler names it.

use serde::Serialize;

use crate::cli::NewArgs;
use crate::clock;
use crate::commands::{Context, ExitStatus, UserError, display_path};
use crate::core::migrations::{self, Layout, MigrationError};

#[derive(Serialize)]
struct Created {
    name: String,
    path: String,
}

pub(crate) fn new(args: &NewArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    // The name becomes part of a file name and is shown in shells and CI logs: only the
    // alphabet the hint states (spaces become `_` as wrangler does; `.sql` at the end is dropped).
    let name = args.name.trim();
    let name = name.strip_suffix(".sql").unwrap_or(name);
    if name.is_empty()
        || !name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '_' | ' '))
    {
        return Err(UserError::new(
            format!("`{}` cannot name a migration", args.name),
            "use only ASCII letters, digits and `_` (a space becomes `_`), e.g. `d1ctl new add_users`",
        )
        .into());
    }
    let registry = context.registry()?;
    let dir = &registry.project.migrations_dir;
    let set = match migrations::load(dir, registry.project.layout) {
        Ok(set) => set,
        Err(MigrationError::MissingDir { .. }) => {
            fs_err::create_dir_all(dir)?;
            migrations::load(dir, registry.project.layout)?
        }
        Err(error) => return Err(error.into()),
    };
    if set.layout == Layout::Drizzle {
        return Err(UserError::new(
            format!("`{}` is a drizzle-kit folder; its migrations come from your schema", display_path(dir)),
            "run `drizzle-kit generate` (or `drizzle-kit generate --custom --name NAME` for hand-written SQL)",
        )
        .into());
    }
    let file_name = migrations::next_migration_name(&set.migrations, name);
    let path = dir.join(&file_name);
    let number = file_name.split('_').next().unwrap_or_default();
    // wrangler's header line: `-- Migration number: NNNN` TAB ISO-8601 time.
    let header = format!(
        "-- Migration number: {number} \t {}\n",
        clock::iso8601_now()
    );
    fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, header.as_bytes()))?;
    let created = Created {
        name: file_name,
        path: display_path(&path),
    };
    if context.printer.is_json() {
        context.printer.json(&created)?;
    } else {
        context
            .printer
            .message(&format!("created `{}`", created.path));
        context.printer.data(&created.path)?;
    }
    Ok(ExitStatus::Success)
}
