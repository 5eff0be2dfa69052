//! How a command reaches a database: the backend of an env, the D1 client with its
//! credentials and base URL, and the bundled simulator.

use std::path::Path;

use anyhow::Context as _;

use crate::backend::Backend;
use crate::commands::{Context, FolderCreation, UserError, display_path};
use crate::core::registry::{
    ConfigError, D1Target, Environment, FleetSpec, MemberName, Registry, Target,
};
use crate::credentials::{self, KeyringStore, ProcessEnvironment, Secret};
use crate::d1::client::{D1Backend, D1Client, D1Config, DEFAULT_BASE_URL};
use crate::local::SqliteBackend;
use crate::sim::{SimConfig, Simulator};

/// The variable wrangler honours for its API base URL.
pub(super) const BASE_URL_VARIABLE: &str = "CLOUDFLARE_API_BASE_URL";

/// The token d1ctl and its in-process simulator share; it guards nothing real.
const SIMULATOR_TOKEN: &str = "d1ctl-simulator";

/// What credential resolution is given as a fleet env's database id: the members' ids come
/// from the fleet, and this one is never sent.
const FLEET_DATABASE_ID: &str = "(fleet)";

/// The account id simulator envs use when environments.toml gives none.
const SIMULATOR_ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

impl Context {
    /// Where `CLOUDFLARE_API_BASE_URL` sends a D1 env's requests instead of Cloudflare: only an
    /// env that names no `api_base_url` of its own (and is not on the simulator) follows it.
    pub(crate) fn redirect_of(env: &Environment) -> Option<String> {
        match &env.target {
            Target::D1(target) if !target.simulator && target.api_base_url.is_none() => {
                std::env::var(BASE_URL_VARIABLE)
                    .ok()
                    .filter(|url| !url.is_empty())
            }
            _ => None,
        }
    }

    /// A protected env's token goes where `CLOUDFLARE_API_BASE_URL` points only once the user
    /// confirms it, reads included: a stray exported variable would otherwise hand production's
    /// token to any server. Checked here, where every command gets its D1 client, so no command
    /// can send the token without it; `--yes` is global so that reads (`status`, `drift`,
    /// `export`, `plan`, …) can confirm the same way writes do.
    fn confirm_redirect(&self, env: &Environment, url: &str) -> anyhow::Result<()> {
        use crate::cli::prompt::{Answer, ask};
        let mut confirmed = self
            .redirects_confirmed
            .lock()
            .map_err(|_| anyhow::anyhow!("a confirmation prompt panicked"))?;
        if confirmed.contains(&env.name) {
            return Ok(());
        }
        let what = format!(
            "`{}` is protected and `{BASE_URL_VARIABLE}` redirects its API to {url}",
            env.name
        );
        if self.yes {
            self.printer.message(&format!(
                "{what}; sending its token there, confirmed by `--yes`"
            ));
        } else {
            let question = format!("{what}. Type its name to send its token there:");
            match ask(&self.printer, &question, &env.name)? {
                Answer::Confirmed => {}
                Answer::Refused => {
                    return Err(UserError::new(
                        format!("not confirmed; nothing was sent to {url}"),
                        redirect_hint(),
                    )
                    .into());
                }
                Answer::NoTerminal => {
                    return Err(UserError::new(
                        format!("{what}; nothing was sent for it"),
                        redirect_hint(),
                    )
                    .into());
                }
            }
        }
        confirmed.push(env.name.clone());
        Ok(())
    }

    pub(crate) fn backend(
        &self,
        registry: &Registry,
        env: &Environment,
    ) -> anyhow::Result<Box<dyn Backend>> {
        match &env.target {
            Target::Sqlite(target) => {
                self.local_folder(registry, env, &target.path)?;
                Ok(Box::new(SqliteBackend::new(&target.path, target.d1_rules)))
            }
            Target::D1(_) => Ok(Box::new(self.d1_backend(registry, env)?)),
        }
    }

    /// Makes sure the folder of a local env's `path` exists: a command that writes to `env`
    /// creates it and says so; any other command refuses, since reading a file in a folder
    /// that does not exist would report "nothing applied" for what is most likely a wrong path.
    /// (A missing file in an existing folder is a database nothing was applied to yet.)
    ///
    /// Folders that d1ctl or wrangler own are exempt: wrangler's local state
    /// (`wrangler_database_id`) appears once `wrangler dev` has run, and `.d1ctl/` is d1ctl's own
    /// working folder; before that they read as empty, as they always have.
    pub(crate) fn local_folder(
        &self,
        registry: &Registry,
        env: &Environment,
        path: &Path,
    ) -> anyhow::Result<()> {
        let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(());
        };
        let owned = matches!(&env.target, Target::Sqlite(target) if target.wrangler_database_id.is_some())
            || path.starts_with(registry.root.join(".d1ctl"));
        if owned || folder.is_dir() {
            return Ok(());
        }
        let creates = match &self.creates_folders {
            FolderCreation::Never => false,
            FolderCreation::Any => true,
            FolderCreation::For(name) => {
                env.name == *name || env.aliases.iter().any(|alias| alias == name)
            }
        };
        if !creates {
            return Err(UserError::new(
                format!(
                    "env `{}`: the folder `{}` of its `path` does not exist ({})",
                    env.name,
                    display_path(folder),
                    display_path(Path::new(&env.declared_at))
                ),
                format!(
                    "fix `path` in environments.toml, or create the folder; `d1ctl apply {}` creates it",
                    env.name
                ),
            )
            .into());
        }
        fs_err::create_dir_all(folder)?;
        self.printer.message(&format!(
            "created folder `{}` for env `{}`",
            display_path(folder),
            env.name
        ));
        Ok(())
    }

    /// The D1 client of a `d1` env: the bundled simulator's, or Cloudflare's with the env's
    /// credentials.
    pub(crate) fn d1_backend(
        &self,
        registry: &Registry,
        env: &Environment,
    ) -> anyhow::Result<D1Backend> {
        let member = self.member_of(registry, env)?;
        self.d1_backend_of(registry, env, member.as_ref())
    }

    /// The one database of a fleet env a command that is not about fleets works on: the one
    /// `--member` names (checked against the fleet), or an error saying to name one.
    fn member_of(
        &self,
        _registry: &Registry,
        env: &Environment,
    ) -> anyhow::Result<Option<MemberName>> {
        let Some(fleet) = env.fleet() else {
            return Ok(None);
        };
        let Some(name) = &self.member else {
            return Err(UserError::new(
                format!(
                    "env `{}` is a fleet ({}), and this command works on one database",
                    env.name,
                    fleet.describe()
                ),
                "pass `--member NAME` to pick one of its databases; `status`, `drift`, `plan`, `checklist`, `promote`, `rollback` and `lock status` take the whole fleet",
            )
            .into());
        };
        let listed = |names: &[MemberName]| names.iter().find(|m| &m.name == name).cloned();
        let found = match fleet {
            FleetSpec::Prefix(prefix) => name.starts_with(prefix.as_str()).then(|| MemberName {
                name: name.clone(),
                uuid: None,
            }),
            FleetSpec::Databases(names) => listed(names),
            FleetSpec::File(path) => listed(&crate::core::fleet::read_file(path)?),
        };
        found.map(Some).ok_or_else(|| {
            UserError::new(
                format!(
                    "`--member {name}` is not one of env `{}`'s databases ({})",
                    env.name,
                    fleet.describe()
                ),
                format!("`d1ctl status {}` lists the members", env.name),
            )
            .into()
        })
    }

    /// The backend of one member of a fleet env.
    pub(crate) fn member_backend(
        &self,
        registry: &Registry,
        env: &Environment,
        member: &MemberName,
    ) -> anyhow::Result<D1Backend> {
        self.d1_backend_of(registry, env, Some(member))
    }

    fn d1_backend_of(
        &self,
        registry: &Registry,
        env: &Environment,
        member: Option<&MemberName>,
    ) -> anyhow::Result<D1Backend> {
        let Target::D1(target) = &env.target else {
            return Err(UserError::new(
                format!(
                    "env `{}` is a local SQLite file, not a D1 database",
                    env.name
                ),
                "this needs a `backend = \"d1\"` environment",
            )
            .into());
        };
        let config = if target.simulator {
            let simulator = self.simulator(registry)?;
            D1Config {
                base_url: simulator.base_url(),
                account_id: target
                    .account_id
                    .clone()
                    .unwrap_or_else(|| SIMULATOR_ACCOUNT.to_owned()),
                database_id: match member {
                    Some(member) => member.id(),
                    None => simulator_database_id(env, target)?,
                },
                database_name: member
                    .map_or_else(|| target.database_name.clone(), |m| m.name.clone()),
                token: Secret::new(SIMULATOR_TOKEN.to_owned()),
                mode: target.request_mode,
            }
        } else {
            // An env's own `api_base_url` wins; the variable (the one wrangler honours, so one
            // setting points both at a simulator) only fills in for envs that name none.
            let redirect = Self::redirect_of(env);
            if let (Some(url), true) = (&redirect, env.protected) {
                self.confirm_redirect(env, url)?;
            }
            let request = credential_request(registry, env, target);
            let keyring = KeyringStore::new();
            // The keyring answers over D-Bus, which blocks.
            let resolved = tokio::task::block_in_place(|| {
                credentials::resolve(&request, &ProcessEnvironment, Some(&keyring))
            })
            .with_context(|| format!("no credentials for env `{}`", env.name))?;
            self.printer.detail(&format!(
                "env `{}`: token from {}, account id from {}, database id from {}",
                env.name,
                resolved.token.source,
                resolved.account_id.source,
                resolved.database_id.source
            ));
            let base_url = target
                .api_base_url
                .clone()
                .or(redirect)
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
            D1Config {
                base_url,
                account_id: resolved.account_id.value,
                database_id: match member {
                    Some(member) => member.id(),
                    None => resolved.database_id.value,
                },
                database_name: member
                    .map_or_else(|| target.database_name.clone(), |m| m.name.clone()),
                token: resolved.token.value,
                mode: target.request_mode,
            }
        };
        let http = if let Some(http) = self.http.get() {
            http.clone()
        } else {
            let http =
                crate::d1::client::http_client().context("could not set up the HTTP client")?;
            self.http.get_or_init(|| http).clone()
        };
        let reporter = std::sync::Arc::new(crate::cli::reporter::WaitProgress::new(&self.printer));
        Ok(D1Backend::new(
            D1Client::with_http(config, http)?
                .with_wait_reporter(reporter)
                .with_budget(std::sync::Arc::clone(&self.budget)),
        ))
    }

    /// The in-process simulator serving every `simulator = true` env, its data under
    /// `.d1ctl/sim` beside environments.toml.
    fn simulator(&self, registry: &Registry) -> anyhow::Result<&Simulator> {
        if let Some(simulator) = self.simulator.get() {
            return Ok(simulator);
        }
        let mut databases = Vec::new();
        for env in &registry.environments {
            if let Target::D1(target) = &env.target
                && target.simulator
            {
                databases.push((
                    target.database_name.clone(),
                    simulator_database_id(env, target)?,
                ));
            }
        }
        let data_dir = registry.root.join(".d1ctl").join("sim");
        let simulator = Simulator::start(SimConfig {
            data_dir: Some(data_dir.clone()),
            tokens: vec![SIMULATOR_TOKEN.to_owned()],
            databases,
        })
        .with_context(|| {
            format!(
                "could not start the bundled D1 simulator in `{}`",
                display_path(&data_dir)
            )
        })?;
        self.printer
            .detail(&format!("bundled D1 simulator at {}", simulator.base_url()));
        Ok(self.simulator.get_or_init(|| simulator))
    }
}

fn redirect_hint() -> String {
    format!(
        "pass `--yes` to send it there anyway; unset `{BASE_URL_VARIABLE}` to reach Cloudflare, or give the env its own `api_base_url` in environments.toml"
    )
}

/// A simulated env with a token meant for it: the env was surely meant to reach Cloudflare.
pub(super) fn simulated_with_token(
    env: &Environment,
    setting: &credentials::TokenSetting,
) -> ConfigError {
    let (location, place) = match &setting.file {
        Some(file) => (
            match setting.line {
                Some(line) => format!("{}:{line}", display_path(file)),
                None => display_path(file),
            },
            format!("`{}` sets `{}`", display_path(file), setting.variable),
        ),
        None => (
            display_path(Path::new(&env.declared_at)),
            format!("the environment variable `{}` is set", setting.variable),
        ),
    };
    ConfigError {
        location,
        message: format!(
            "env `{}` runs on the bundled simulator (`simulator = true`, {}) but {place}, a token meant for it",
            env.name,
            display_path(Path::new(&env.declared_at))
        ),
        hint: format!(
            "a token means `{}` is meant for Cloudflare: delete `simulator = true` from `[env.{}]` to reach it, or remove the token to stay on the simulator",
            env.name, env.name
        ),
    }
}

/// What credential resolution needs to know of a `d1` env.
pub(crate) fn credential_request<'a>(
    registry: &'a Registry,
    env: &'a Environment,
    target: &'a D1Target,
) -> credentials::Request<'a> {
    credentials::Request {
        env: &env.name,
        config_dir: &registry.root,
        token_env: target.token_env.as_deref(),
        account_id: target.account_id.as_deref(),
        // A fleet's database ids come from its `fleet` table, not from the credentials.
        database_id: if target.fleet.is_some() {
            Some(FLEET_DATABASE_ID)
        } else {
            target.database_id.as_deref()
        },
        config_path: &registry.path,
    }
}

fn simulator_database_id(env: &Environment, target: &D1Target) -> anyhow::Result<String> {
    target.database_id.clone().ok_or_else(|| {
        UserError::new(
            format!(
                "env `{}` runs on the simulator but has no `database_id`",
                env.name
            ),
            "give it any UUID, e.g. `database_id = \"00000000-0000-4000-8000-000000000001\"`",
        )
        .into()
    })
}
