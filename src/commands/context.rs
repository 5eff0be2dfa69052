//! What commands that read a rung or write share: opening and reading targets and sources,
//! rehearsals, and one write session through the engine.

use anyhow::Context as _;

use crate::backend::Backend;
use crate::cli::reporter::RehearsalProgress;
use crate::commands::{Context, ExitStatus, UserError, actor, display_path};
use crate::core::export::{SchemaObject, Source, SourceKind};
use crate::core::migrations::MigrationSet;
use crate::core::promote::{View, read_view};
use crate::core::registry::{Environment, Registry, Target};
use crate::core::rehearse::Rehearsal;

impl Context {
    /// Opens an env's database and confirms it is the configured one; `announce` prints the
    /// target line every writing command starts with.
    pub(crate) async fn open_target(
        &self,
        registry: &Registry,
        env: &Environment,
        announce: bool,
    ) -> anyhow::Result<(Box<dyn Backend>, crate::backend::Identity)> {
        let backend = self.backend(registry, env)?;
        let identity = backend
            .describe()
            .await
            .with_context(|| format!("could not confirm the database of env `{}`", env.name))?;
        if announce {
            self.printer
                .message(&self.target_line(env, backend.kind(), &identity.label));
        }
        Ok((backend, identity))
    }

    /// Opens `env` and reads both sides of its rung, then plans it: what `plan`, `promote`,
    /// `rehearse` and `checklist` all start from.
    pub(crate) async fn read_rung(
        &self,
        registry: &Registry,
        set: &MigrationSet,
        ledgers: &crate::core::ledger::Ledgers,
        env: &Environment,
        announce: bool,
    ) -> anyhow::Result<Rung> {
        let (backend, identity) = self.open_target(registry, env, announce).await?;
        let source = self.read_source(registry, set, ledgers, env).await?;
        let target = read_view(
            ledgers,
            set,
            backend.as_ref(),
            &env.name,
            identity.known_empty,
        )
        .await?;
        let plan = crate::core::promote::plan(
            set,
            &source,
            &target,
            backend.kind(),
            &ledgers.ignored_tables(),
            None,
        );
        Ok(Rung {
            backend,
            identity,
            source,
            target,
            plan,
        })
    }

    /// The source of `env` as a promotion side: the rung below it (one request), or the
    /// migrations folder for the first rung.
    pub(crate) async fn read_source(
        &self,
        registry: &Registry,
        set: &MigrationSet,
        ledgers: &crate::core::ledger::Ledgers,
        env: &Environment,
    ) -> anyhow::Result<View> {
        match registry.rung_before(&env.name) {
            Some(below) => {
                let backend = self.backend(registry, below)?;
                Ok(read_view(ledgers, set, backend.as_ref(), &below.name, false).await?)
            }
            None => Ok(View::folder(set)),
        }
    }

    /// Rehearses `plan`'s pending migrations on a copy of `env` (already opened and read as
    /// `target`) and records the result; reads and (for D1) an export are all it asks of `env`.
    #[expect(
        clippy::too_many_arguments,
        reason = "what a rehearsal needs of the promotion just planned"
    )]
    pub(crate) async fn rehearse(
        &self,
        registry: &Registry,
        set: &MigrationSet,
        env: &Environment,
        identity: &crate::backend::Identity,
        target: &View,
        plan: &crate::core::promote::Plan,
        all_in_one: bool,
    ) -> anyhow::Result<Rehearsal> {
        let kind = match &env.target {
            Target::Sqlite(sqlite) => SourceKind::Sqlite(sqlite.path.clone()),
            Target::D1(_) => SourceKind::D1(self.d1_backend(registry, env)?),
        };
        let source = Source {
            env,
            kind,
            label: identity.label.clone(),
        };
        let ledgers = crate::core::ledger::Ledgers::new(&registry.project.ledger, set.layout);
        let ignore = ledgers.ignored_tables();
        let objects = SchemaObject::from_snapshot(&target.snapshot);
        let pending = plan.migrations(set);
        let tmp_dir = crate::core::temp::tmp_dir(registry)
            .context("could not create `.d1ctl/tmp` for the copy")?;
        let request = crate::core::rehearse::Request {
            source: &source,
            objects: &objects,
            size_bytes: identity.size_bytes,
            known_empty: identity.known_empty,
            rung_below: &plan.source,
            pending: &pending,
            all_in_one,
            ignore: &ignore,
            tmp_dir: &tmp_dir,
        };
        let progress = RehearsalProgress::new(&self.printer);
        let rehearsal = crate::core::rehearse::rehearse(&request, &progress)
            .await
            .with_context(|| format!("could not rehearse on a copy of `{}`", env.name))?;
        let path = crate::core::rehearse::record::save(&registry.root, &rehearsal)?;
        self.printer
            .message(&format!("recorded in `{}`", display_path(&path)));
        Ok(rehearsal)
    }

    /// Opens an env for dumping: a local file that must exist, or a D1 database confirmed with
    /// Cloudflare (one request).
    pub(crate) async fn open_source<'a>(
        &self,
        registry: &Registry,
        env: &'a Environment,
    ) -> anyhow::Result<Source<'a>> {
        match &env.target {
            Target::Sqlite(target) => {
                // A source is only read: a missing folder is its own, clearer mistake.
                self.local_folder(registry, env, &target.path)?;
                if !target.path.is_file() {
                    return Err(UserError::new(
                        format!(
                            "env `{}` has no database yet: `{}` does not exist",
                            env.name,
                            display_path(&target.path)
                        ),
                        format!(
                            "create it with `d1ctl apply {}`, or check its `path` in environments.toml",
                            env.name
                        ),
                    )
                    .into());
                }
                Ok(Source {
                    env,
                    kind: SourceKind::Sqlite(target.path.clone()),
                    label: display_path(&target.path),
                })
            }
            Target::D1(_) => {
                let backend = self.d1_backend(registry, env)?;
                let identity = backend.describe().await.with_context(|| {
                    format!("could not confirm the database of env `{}`", env.name)
                })?;
                Ok(Source {
                    env,
                    kind: SourceKind::D1(backend),
                    label: identity.label,
                })
            }
        }
    }
}

/// A rung as read before anything is written: its target, both sides, and the plan.
pub(crate) struct Rung {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) identity: crate::backend::Identity,
    pub(crate) source: View,
    pub(crate) target: View,
    pub(crate) plan: crate::core::promote::Plan,
}

/// What a command asks of one write session.
pub(crate) struct WriteRequest<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) env: &'a Environment,
    pub(crate) backend: &'a dyn Backend,
    /// What the session is, as recorded: `apply dev`, `promote --to staging`.
    pub(crate) command: String,
    pub(crate) yes: bool,
    pub(crate) dry_run: bool,
}

impl Context {
    /// Runs one write session through the engine. `Ok(Err(status))`: a held lock refused it
    /// (printed; the user must act, exit 1); any other stop before writing is an error.
    pub(crate) async fn write<J: crate::core::write::Job>(
        &self,
        request: WriteRequest<'_>,
        job: &J,
        reporter: &dyn crate::core::write::WriteReporter<J::Plan>,
    ) -> anyhow::Result<Result<crate::core::write::Report<J>, ExitStatus>> {
        use crate::core::write::{self, WriteError};
        let backups = request.registry.root.join(".d1ctl").join("backups");
        let target = write::Target {
            backend: request.backend,
            env: request.env,
            backups: &backups,
        };
        let options = write::Options {
            command: request.command,
            actor: actor(),
            yes: request.yes,
            dry_run: request.dry_run,
            session: None,
        };
        match write::run(&target, job, &options, reporter).await {
            Ok(report) => Ok(Ok(report)),
            Err(error @ WriteError::Locked(_)) => {
                self.printer.error(
                    &format!("{error}; nothing was written"),
                    error.hint().as_deref(),
                );
                Ok(Err(ExitStatus::Failure))
            }
            Err(error) => Err(anyhow::Error::from(error)
                .context(format!("the write to `{}` stopped", request.env.name))),
        }
    }
}
