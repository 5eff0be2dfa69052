//! `d1ctl pull ENV --into LOCAL_ENV`: replace a local SQLite env with a copy of another env's
//! schema and data ("sync from production").
//!
//! The write itself is `core::write::replace`, run by the write engine: dump and build before
//! the lock, then under it keep the target as the session's rollback point and rename the copy over
//! it. The dump carries the ledger tables, so the target's ledgers end up as the source's. The
//! run and its report are `commands::replace`'s, shared with `reset --from`.

use crate::cli::PullArgs;
use crate::commands::replace::{Replace, Verb, replace};
use crate::commands::{Context, ExitStatus};

pub(crate) async fn pull(args: PullArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    let source = registry.resolve(&args.environment)?;
    let target = registry.resolve(&args.into)?;
    let request = Replace {
        verb: Verb::Pull,
        source: Some(source),
        target,
        set: None,
        command: format!("pull {} --into {}", source.name, target.name),
        yes: args.yes,
        dry_run: false,
    };
    replace(context, &registry, request).await
}
