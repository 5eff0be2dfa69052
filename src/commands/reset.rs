//! `d1ctl reset ENV`: recreate a local SQLite env from nothing, every migration of the folder
//! applied to a new file with its ledger rows; with `--from OTHER`, exactly `pull OTHER --into
//! ENV`. Both go through `commands::replace` and the write engine: the current file becomes
//! the session's rollback point (a backup under `.d1ctl/backups/`) and the new file is renamed
//! over it.

use crate::cli::ResetArgs;
use crate::commands::replace::{Replace, Verb, replace};
use crate::commands::{Context, ExitStatus};

pub(crate) async fn reset(args: ResetArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    let target = registry.resolve(&args.environment)?;
    let source = args
        .from
        .as_deref()
        .map(|name| registry.resolve(name))
        .transpose()?;
    // Refused before the folder is read: a d1 or protected env is never reset.
    crate::commands::replace::local_target(Verb::Reset, target)?;
    let set = context.migrations(&registry)?;
    let command = match source {
        Some(source) => format!("reset {} --from {}", target.name, source.name),
        None => format!("reset {}", target.name),
    };
    let request = Replace {
        verb: Verb::Reset,
        source,
        target,
        set: Some(&set),
        command,
        yes: args.yes,
        dry_run: args.dry_run,
    };
    replace(context, &registry, request).await
}
