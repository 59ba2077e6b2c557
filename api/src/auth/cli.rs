//! `flagmeter-api keys create|list|revoke`: API keys managed straight in the
//! database (`DATABASE_URL`), with no api running, over [`super::store`].

use chrono::{DateTime, Utc};
use clap::Subcommand;
use runtime::config::DatabaseArgs;

use super::{Scope, store};

/// Manage API keys in the database (DATABASE_URL); no api needs to run.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
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
        /// When the key stops working (RFC 3339, e.g.
        /// 2027-01-01T00:00:00Z); without it, the key works until revoked.
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// List keys, without secrets.
    List,
    /// Revoke a key by its id.
    Revoke { id: uuid::Uuid },
}

fn scope(name: &str) -> Result<Scope, String> {
    Scope::parse(name).ok_or_else(|| format!("unknown scope `{name}`: admin, ingest or read"))
}

impl KeysCommand {
    /// Runs the command, printing a new secret to stdout and the rest to
    /// stderr.
    pub async fn run(self, database: &DatabaseArgs) -> anyhow::Result<()> {
        let db = database.connect().await?;
        migration::run(&db).await?;
        match self {
            KeysCommand::Create {
                name,
                scopes,
                tenant,
                expires_at,
            } => {
                let mut spec = store::KeySpec {
                    name: &name,
                    scopes: &scopes,
                    tenant: tenant.as_deref(),
                    expires_at,
                };
                spec.name = store::check(&spec, Utc::now())
                    .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))?;
                let created = store::create(&db, &spec).await?;
                eprintln!(
                    "created key {} ({}); its secret, shown only now:",
                    created.key.id, created.key.name
                );
                println!("{}", created.secret);
            }
            KeysCommand::List => {
                for key in store::list(&db).await? {
                    let status = match (key.revoked_at, key.expires_at) {
                        (Some(at), _) => format!("revoked {at}"),
                        (None, Some(at)) if at <= Utc::now() => format!("expired {at}"),
                        (None, Some(at)) => format!("active, expires {at}"),
                        (None, None) => "active".to_owned(),
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
}
