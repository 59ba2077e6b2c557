//! `flagmeter-pipeline dead-letters list|redrive`: the operator's view of
//! the dead-letter stream, over [`crate::dead_letter`].

use clap::Subcommand;
use stream::config::ValkeyArgs;

use crate::dead_letter;

/// Inspect or re-drive the dead-letter stream (`{stream}:dead`).
#[derive(Debug, Subcommand)]
pub enum DeadLetters {
    /// Print the oldest dead letters: id, original id, deliveries, reason.
    List {
        /// Most letters to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back into the stream (after fixing their cause).
    Redrive {
        /// Dead-letter ids to re-drive; all of them (up to --limit) if none.
        ids: Vec<String>,
        /// Most letters to re-drive when no ids are given.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

impl DeadLetters {
    /// Runs the command against the configured stream, printing to stdout.
    pub async fn run(self, valkey: &ValkeyArgs) -> anyhow::Result<()> {
        let keys = valkey.keys();
        let mut conn = redis::Client::open(valkey.valkey_url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        match self {
            Self::List { limit } => {
                for letter in dead_letter::list(&mut conn, &keys, limit).await? {
                    println!(
                        "{}\toriginal={}\tdeliveries={}\t{}",
                        letter.id,
                        letter.original_id,
                        letter.deliveries,
                        letter.reason.escape_debug()
                    );
                }
            }
            Self::Redrive { ids, limit } => {
                let mut letters = dead_letter::list(&mut conn, &keys, limit).await?;
                if !ids.is_empty() {
                    letters.retain(|l| ids.contains(&l.id));
                }
                let redriven = dead_letter::redrive(&mut conn, &keys, &letters).await?;
                println!(
                    "re-drove {redriven} of {} dead letters ({} had no payload and were dropped)",
                    letters.len(),
                    letters.len() - redriven
                );
            }
        }
        Ok(())
    }
}
