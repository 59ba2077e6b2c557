//! `flagmeter-api`: the HTTP service (ingest, usage, docs), and the `keys`
//! command that manages API keys straight in the database.

use api::{
    auth::{Scope, store},
    config::ApiConfig,
    startup::Application,
};
use clap::{Parser, Subcommand};
use pipeline::config::LogArgs;

/// Accepts AI token usage events and answers quota usage questions.
#[derive(Parser)]
#[command(name = "flagmeter-api", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    config: ApiConfig,
    /// Exit 0 if the api on FLAGMETER_API_ADDR answers `GET /api/health`,
    /// 1 otherwise (for a container health check), instead of running.
    #[arg(long)]
    healthcheck: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Manage API keys in the database (DATABASE_URL); no api needs to run.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret, which is shown only this once.
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// admin, ingest or read; repeat for several.
        #[arg(long = "scope", required = true, value_parser = scope)]
        scopes: Vec<Scope>,
        /// Restrict the key to this tenant (ingest and read only).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List keys, without secrets.
    List,
    /// Revoke a key by its id.
    Revoke { id: uuid::Uuid },
}

fn scope(name: &str) -> Result<Scope, String> {
    Scope::parse(name).ok_or_else(|| format!("unknown scope `{name}`: admin, ingest or read"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.healthcheck {
        let healthy = pipeline::telemetry::probe(cli.config.api_addr, "/api/health").await;
        std::process::exit(if healthy { 0 } else { 1 });
    }
    pipeline::telemetry::init(&cli.log);
    if let Some(Command::Keys(command)) = cli.command {
        return keys(&cli.config, command).await;
    }
    let shutdown = pipeline::shutdown::on_signal();
    let app = Application::build(cli.config).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(())
}

async fn keys(config: &ApiConfig, command: KeysCommand) -> anyhow::Result<()> {
    let db = config.database.connect().await?;
    migration::run(&db).await?;
    match command {
        KeysCommand::Create {
            name,
            scopes,
            tenant,
        } => {
            let name = store::check(&name, &scopes, tenant.as_deref())
                .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))?;
            let created = store::create(&db, name, &scopes, tenant.as_deref()).await?;
            eprintln!(
                "created key {} ({}); its secret, shown only now:",
                created.key.id, created.key.name
            );
            println!("{}", created.secret);
        }
        KeysCommand::List => {
            for key in store::list(&db).await? {
                let status = match key.revoked_at {
                    Some(at) => format!("revoked {at}"),
                    None => "active".to_owned(),
                };
                println!(
                    "{}  {}…  {:<20}  {}  tenant={}  {}",
                    key.id,
                    key.prefix,
                    key.name,
                    key.scopes.join(","),
                    key.tenant.as_deref().unwrap_or("*"),
                    status
                );
            }
        }
        KeysCommand::Revoke { id } => match store::revoke(&db, id).await? {
            Some(_) => eprintln!("revoked key {id}"),
            None => anyhow::bail!("no key {id}"),
        },
    }
    Ok(())
}
