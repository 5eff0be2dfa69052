//! `d1ctl sim`: serve the bundled D1 API simulator, for tests of your own tools and CI.

use anyhow::Context as _;

use crate::cli::SimArgs;
use crate::commands::{Context, ExitStatus, UserError};
use crate::sim::{self, SimConfig};

pub(crate) async fn sim(args: SimArgs, context: &Context) -> anyhow::Result<ExitStatus> {
    let mut databases = Vec::new();
    for declaration in &args.databases {
        let Some((name, uuid)) = declaration.split_once('=') else {
            return Err(UserError::new(
                format!("`--database {declaration}` is not NAME=UUID"),
                "e.g. `--database app-staging=00000000-0000-4000-8000-000000000002`",
            )
            .into());
        };
        databases.push((name.to_owned(), uuid.to_owned()));
    }
    let mut fleets = Vec::new();
    for declaration in &args.fleets {
        let fleet = declaration
            .rsplit_once(':')
            .and_then(|(prefix, count)| Some((prefix.to_owned(), count.parse::<usize>().ok()?)));
        let Some(fleet) = fleet else {
            return Err(UserError::new(
                format!("`--create {declaration}` is not PREFIX:COUNT"),
                "e.g. `--create tenant-:200` for databases tenant-1 … tenant-200",
            )
            .into());
        };
        fleets.push(fleet);
    }
    if args.tokens.is_empty() {
        return Err(UserError::new(
            "the simulator needs at least one `--token`",
            "e.g. `d1ctl sim --port 8787 --data .d1ctl/sim --token test-token`; clients send it as `Authorization: Bearer test-token`",
        )
        .into());
    }
    let address = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("could not listen on {address}"))?;
    let bound = listener.local_addr()?;
    context.printer.message(&format!(
        "D1 API simulator on http://{bound}/client/v4 (data in `{}`); stop with Ctrl-C\n\
         point d1ctl or wrangler at it with CLOUDFLARE_API_BASE_URL=http://{bound}/client/v4",
        args.data.display()
    ));
    let config = SimConfig {
        data_dir: Some(args.data),
        tokens: args.tokens,
        databases,
    };
    sim::serve_with_fleets(config, &fleets, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitStatus::Success)
}
