//! `d1ctl auth status|login|logout`: where each credential of an env comes from, and the OS
//! keyring entry of an env. Secrets are never printed.

use std::fmt::Write as _;

use anyhow::Context as _;

use crate::cli::printer::Style;
use crate::cli::{AuthArgs, AuthCommand};
use crate::commands::{Context, ExitStatus, UserError, credential_request};
use crate::core::registry::{D1Target, Environment, Registry, Target};
use crate::credentials::{
    self, CandidateState, Explanation, KEYRING_NAME, KEYRING_SERVICE, KeyringStore,
    ProcessEnvironment, SecretStore,
};

pub(crate) async fn auth(args: AuthArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let registry = context.registry()?;
    match args.command {
        AuthCommand::Status { environments } => status(context, &registry, &environments),
        AuthCommand::Login { environment } => {
            let (env, _) = d1_env(&registry, &environment)?;
            let name = env.name.clone();
            let secret = tokio::task::spawn_blocking(move || {
                credentials::read_secret_from_stdin_or_prompt(
                    &name,
                    &format!("API token for `{name}`: "),
                )
            })
            .await??;
            let store = KeyringStore::new();
            let name = env.name.clone();
            tokio::task::spawn_blocking(move || store.set(&name, &secret))
                .await?
                .with_context(|| {
                    format!(
                        "could not store the token of `{}` in the OS keyring",
                        env.name
                    )
                })?;
            context.printer.message(&format!(
                "{} the token of `{}` is in the OS keyring (service `{KEYRING_SERVICE}`, entry `{}`)",
                context.printer.paint(Style::Green, "stored:"),
                env.name,
                env.name
            ));
            Ok(ExitStatus::Success)
        }
        AuthCommand::Logout { environment } => {
            let (env, _) = d1_env(&registry, &environment)?;
            let store = KeyringStore::new();
            let name = env.name.clone();
            let removed = tokio::task::spawn_blocking(move || store.delete(&name))
                .await?
                .with_context(|| {
                    format!(
                        "could not remove the token of `{}` from the OS keyring",
                        env.name
                    )
                })?;
            context.printer.message(&if removed {
                format!("removed the token of `{}` from the OS keyring", env.name)
            } else {
                format!("the OS keyring held no token for `{}`", env.name)
            });
            Ok(ExitStatus::Success)
        }
    }
}

/// The env called `name`, which must reach Cloudflare (a `d1` env not on the simulator).
fn d1_env<'a>(
    registry: &'a Registry,
    name: &str,
) -> anyhow::Result<(&'a Environment, &'a D1Target)> {
    let env = registry.resolve(name)?;
    match &env.target {
        Target::D1(target) if !target.simulator => Ok((env, target)),
        Target::D1(_) => Err(UserError::new(
            format!(
                "env `{}` runs on the bundled simulator and needs no credentials",
                env.name
            ),
            "remove `simulator = true` from it to reach Cloudflare",
        )
        .into()),
        Target::Sqlite(_) => Err(UserError::new(
            format!(
                "env `{}` is a local SQLite file and needs no credentials",
                env.name
            ),
            "credentials belong to `backend = \"d1\"` environments",
        )
        .into()),
    }
}

fn status(context: &Context, registry: &Registry, names: &[String]) -> anyhow::Result<ExitStatus> {
    let environments: Vec<(&Environment, &D1Target)> = if names.is_empty() {
        registry
            .ordered()
            .into_iter()
            .filter_map(|env| match &env.target {
                Target::D1(target) if !target.simulator => Some((env, target)),
                _ => None,
            })
            .collect()
    } else {
        names
            .iter()
            .map(|name| d1_env(registry, name))
            .collect::<anyhow::Result<_>>()?
    };
    let mut explanations = Vec::with_capacity(environments.len());
    for (env, target) in environments {
        let request = credential_request(registry, env, target);
        // The keyring answers over D-Bus, which blocks.
        let explanation = tokio::task::block_in_place(|| {
            credentials::explain(&request, &ProcessEnvironment, Some(&KeyringStore::new()))
        });
        explanations.push(explanation);
    }
    let complete = explanations.iter().all(Explanation::is_complete);
    if context.printer.is_json() {
        context
            .printer
            .json(&serde_json::json!({ "keyring": KEYRING_NAME, "environments": explanations }))?;
    } else if explanations.is_empty() {
        context.printer.message(
            "no environment reaches Cloudflare: every env is local or on the bundled simulator",
        );
    } else {
        // Which store `auth login` writes to: it differs by OS, the service name does not.
        let mut out = format!("keyring: {KEYRING_NAME} (service `{KEYRING_SERVICE}`)\n\n");
        for explanation in &explanations {
            render(context, explanation, &mut out);
        }
        context.printer.data(out.trim_end())?;
    }
    Ok(if complete {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn render(context: &Context, explanation: &Explanation, out: &mut String) {
    let printer = &context.printer;
    let _ = writeln!(out, "{}", printer.paint_out(Style::Bold, &explanation.env));
    for value in [
        &explanation.token,
        &explanation.account_id,
        &explanation.database_id,
    ] {
        if let Some(source) = &value.winner {
            let _ = writeln!(out, "  {:<12} {source}", value.what);
        } else {
            let _ = writeln!(
                out,
                "  {:<12} {}",
                value.what,
                printer.paint_out(Style::Red, "missing")
            );
            for place in &value.looked {
                let _ = writeln!(out, "  {:<12}   looked in {place}", "");
            }
        }
        for candidate in value
            .candidates
            .iter()
            .filter(|c| c.state == CandidateState::Shadowed)
        {
            let _ = writeln!(
                out,
                "  {:<12}   (also set, shadowed: {})",
                "", candidate.place
            );
        }
    }
    if let Some(note) = &explanation.keyring_note {
        let _ = writeln!(out, "  note: {note}");
    }
    for problem in &explanation.problems {
        let _ = writeln!(
            out,
            "  {}: {problem}",
            printer.paint_out(Style::Red, "problem")
        );
    }
    out.push('\n');
}
