//! What the commands that take a whole fleet env share: finding its members, and reaching each
//! of them through one client of the account (credentials are resolved once, not per member).

use crate::backend::Backend;
use crate::commands::{Context, UserError};
use crate::core::registry::{Environment, MemberName, Registry};
use crate::d1::client::D1Backend;

/// A fleet env's members, and the client their backends are made from.
pub(crate) struct Fleet {
    pub(crate) members: Vec<MemberName>,
    account: D1Backend,
}

impl Fleet {
    /// The backend of one member.
    pub(crate) fn backend(&self, member: &MemberName) -> Box<dyn Backend> {
        Box::new(D1Backend::new(
            self.account
                .client()
                .for_database(&member.id(), &member.name),
        ))
    }

    /// [`Fleet::backend`] in the shape `core::fleet` asks for.
    pub(crate) fn connect(
        &self,
    ) -> impl Fn(&MemberName) -> anyhow::Result<Box<dyn Backend>> + Send + Sync + '_ {
        move |member| Ok(self.backend(member))
    }
}

/// The id the account's client is built with: it only lists databases, never addresses one.
const NO_DATABASE: &str = "00000000000000000000000000000000";

impl Context {
    /// Whether a command should treat `env` as a whole fleet (and not one `--member` of it).
    pub(crate) fn is_whole_fleet(&self, env: &Environment) -> bool {
        env.fleet().is_some() && self.member.is_none()
    }

    /// The members of a fleet env: listed from the account (a prefix, or names without their
    /// uuid) or as environments.toml or its file gives them. One list request per 10,000
    /// databases.
    pub(crate) async fn fleet(
        &self,
        registry: &Registry,
        env: &Environment,
    ) -> anyhow::Result<Fleet> {
        let Some(spec) = env.fleet() else {
            return Err(UserError::new(
                format!("env `{}` is not a fleet", env.name),
                "a fleet env has a `fleet` table in environments.toml",
            )
            .into());
        };
        let account = self.member_backend(
            registry,
            env,
            &MemberName {
                name: env.name.clone(),
                uuid: Some(NO_DATABASE.to_owned()),
            },
        )?;
        let members = crate::core::fleet::members(spec, account.client())
            .await
            .map_err(|error| {
                let hint = error.hint().unwrap_or_default();
                UserError::new(format!("env `{}`: {error}", env.name), hint)
            })?;
        self.printer.message(&format!(
            "env `{}`{}: a fleet of {} ({})",
            env.name,
            crate::commands::simulator_mark(env),
            crate::commands::plural(members.len(), "database"),
            spec.describe()
        ));
        Ok(Fleet { members, account })
    }
}
