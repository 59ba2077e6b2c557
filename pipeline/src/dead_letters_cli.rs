//! `flagmeter-pipeline dead-letters list|redrive`: the operator's view of
//! the dead letters (PostgreSQL table `dead_letters`), over
//! [`store::dead_letter`], over every shard of the stream in turn (a
//! letter is re-driven into the shard it came from). Those an earlier
//! version left in the Valkey stream `{stream}:dead` are moved into the
//! table first.

use clap::Subcommand;
use runtime::config::DatabaseArgs;
use store::dead_letter;
use stream::{ConnectOptions, config::ValkeyArgs};

/// Inspect or re-drive the dead letters.
#[derive(Debug, Subcommand)]
pub enum DeadLetters {
    /// Print the oldest dead letters: id, original entry id, kind,
    /// deliveries, reason.
    List {
        /// Most letters to print.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Print only letters after this id (the last id printed).
        #[arg(long)]
        after: Option<i64>,
    },
    /// Put dead letters back into the stream (after fixing their cause).
    Redrive {
        /// Dead-letter ids (as listed) to re-drive; all of them (up to
        /// --limit) if none.
        ids: Vec<i64>,
        /// Most letters to re-drive when no ids are given.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
    },
}

impl DeadLetters {
    /// Runs the command against the configured stream and database,
    /// printing to stdout.
    pub async fn run(self, valkey: &ValkeyArgs, database: &DatabaseArgs) -> anyhow::Result<()> {
        let mut conn = valkey.target()?.connect(ConnectOptions::COMMANDS).await?;
        let db = database.connect().await?;
        migration::run(&db).await?;
        for keys in valkey.shards().all() {
            let imported = dead_letter::import_legacy(&mut conn, &db, keys).await?;
            if imported > 0 {
                eprintln!(
                    "moved {imported} dead letters from {} into PostgreSQL",
                    keys.dead
                );
            }
            match &self {
                Self::List { limit, after } => {
                    for letter in dead_letter::list(&db, &keys.stream, *limit, *after).await? {
                        println!(
                            "{}\toriginal={}\tkind={}\tdeliveries={}\t{}",
                            letter.id,
                            letter.original_id,
                            letter.kind,
                            letter.deliveries,
                            letter.reason.escape_debug()
                        );
                    }
                }
                Self::Redrive { ids, limit } => {
                    let done =
                        dead_letter::redrive_selected(&mut conn, &db, keys, ids, *limit).await?;
                    println!(
                        "re-drove {} of {} dead letters ({} had no payload and were dropped)",
                        done.redriven,
                        done.selected,
                        done.selected - done.redriven
                    );
                }
            }
        }
        Ok(())
    }
}
