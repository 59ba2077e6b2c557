//! Test isolation against the real services: every test gets a database of
//! its own and a stream key of its own, so tests run in parallel without
//! seeing each other, and both are removed when the test is done.
//!
//! A test database is a copy of a template that the real migrations built
//! (`CREATE DATABASE ... TEMPLATE`), made once per schema: copying a
//! migrated database takes a fraction of applying every migration to each
//! of a few hundred test databases. The template is named by a fingerprint
//! of the migration sources (see `build.rs`) and the day, so a changed
//! schema gets a template of its own, and it is built under a different name and renamed
//! when complete, under an advisory lock, so that test processes starting
//! together build it once and never copy half a schema.
//!
//! `FLAGMETER_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`)
//! and `VALKEY_URL` (default `redis://127.0.0.1:6379`) say where the
//! services are.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio_util::sync::CancellationToken;

use alerts::config::{AlertArgs, SenderArgs};
use pipeline::{
    app::{Pipeline, PipelineConfig},
    config::WorkerArgs,
    writer::{NewTenants, Written, tenants_of, write_batch},
};
use runtime::config::DatabaseArgs;
use stream::{EventRecord, StreamKeys, append, config::ValkeyArgs, ensure_group};

fn postgres_base() -> String {
    std::env::var("FLAGMETER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Where Valkey (or Redis) is for tests.
pub fn valkey_url() -> String {
    std::env::var("VALKEY_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A fresh, migrated database and a fresh stream key.
pub struct TestEnv {
    pub database_url: String,
    pub db: DatabaseConnection,
    pub stream: String,
    pub group: String,
    database: String,
}

impl TestEnv {
    pub async fn new() -> Self {
        crate::log::init();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let database = format!("flagmeter_test_{id}");
        // One connection, so that the template's advisory lock and unlock
        // are one session's.
        let mut options = sea_orm::ConnectOptions::new(format!("{}/postgres", postgres_base()));
        options.max_connections(1).sqlx_logging(false);
        let admin = Database::connect(options)
            .await
            .expect("PostgreSQL must be reachable for the tests");
        let template = template(&admin).await;
        admin
            .execute_unprepared(&format!(
                "CREATE DATABASE \"{database}\" TEMPLATE \"{template}\""
            ))
            .await
            .expect("create the test database");
        admin.close().await.ok();
        let database_url = format!("{}/{database}", postgres_base());
        let db = Database::connect(&database_url)
            .await
            .expect("connect to the test database");
        Self {
            database_url,
            db,
            stream: format!("flagmeter-test:{id}"),
            group: "rollups".to_owned(),
            database,
        }
    }

    pub fn valkey_args(&self) -> ValkeyArgs {
        ValkeyArgs::single(&valkey_url(), &self.stream, &self.group)
    }

    pub fn database_args(&self) -> DatabaseArgs {
        DatabaseArgs {
            database_url: self.database_url.clone(),
            db_max_connections: 5,
        }
    }

    /// A pipeline replica's configuration, with short waits for tests.
    pub fn pipeline_config(&self, consumer: &str) -> PipelineConfig {
        PipelineConfig {
            metrics_addr: None,
            valkey: self.valkey_args(),
            database: self.database_args(),
            worker: WorkerArgs {
                consumer: Some(consumer.to_owned()),
                batch_size: 200,
                block_ms: 200,
                claim_idle_ms: 2_000,
                claim_interval_ms: 500,
                max_deliveries: 5,
                event_retention_days: 35,
                trim_interval_ms: 500,
                db_statement_timeout_ms: None,
                db_lock_timeout_ms: None,
                db_idle_in_transaction_ms: None,
                stale_consumer_secs: 86_400,
                failpoint: None,
            },
            alerts: AlertArgs {
                alert_thresholds: vec![80],
                webhook_allowed_hosts: vec!["127.0.0.1:*".into()],
                webhook_allow_insecure: true,
            },
            sender: SenderArgs {
                alert_retry_base_ms: 100,
                alert_retry_max_ms: 1_000,
                alert_give_up_secs: 60,
                alert_poll_ms: 100,
            },
            tenants: Default::default(),
            money: Default::default(),
        }
    }

    /// Starts a pipeline replica in this process.
    pub fn spawn_pipeline(&self, consumer: &str) -> Replica {
        Replica::start(self.pipeline_config(consumer))
    }

    /// Counts `events` as a pipeline replica does (one transaction, then
    /// the alerts of the batch's tenants decided against the committed
    /// totals), creating tenants it has not seen with `monthly_quota`.
    pub async fn write(&self, events: &[EventRecord], monthly_quota: i64) -> Written {
        let written = write_batch(&self.db, events, &new_tenants(monthly_quota))
            .await
            .expect("the batch is written");
        alerts::rules::evaluate(&self.db, &tenants_of(events), chrono::Utc::now())
            .await
            .expect("the alerts are evaluated");
        written
    }

    /// A plain Valkey connection for looking at the stream.
    pub async fn valkey(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(valkey_url())
            .expect("valid Valkey URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Valkey must be reachable for the tests")
    }

    /// Appends `records` to the test's stream (creating its group first),
    /// 100 to an `XADD` pipeline as the api's batches are; returns their ids.
    pub async fn append(&self, records: &[EventRecord]) -> Vec<String> {
        let mut conn = self.valkey().await;
        ensure_group(&mut conn, &StreamKeys::new(&self.stream, &self.group))
            .await
            .expect("the group is created");
        let mut ids = Vec::with_capacity(records.len());
        for chunk in records.chunks(100) {
            let payloads: Vec<Vec<u8>> = chunk.iter().map(EventRecord::encode).collect();
            ids.extend(
                append(&mut conn, &self.stream, &payloads)
                    .await
                    .expect("the records are appended"),
            );
        }
        ids
    }

    /// Reads up to `count` new entries as group member `consumer`, which then
    /// never acknowledges them (a replica that dies); returns their ids.
    pub async fn read_as(&self, consumer: &str, count: usize) -> Vec<String> {
        let options = redis::streams::StreamReadOptions::default()
            .group(&self.group, consumer)
            .count(count);
        let reply: redis::streams::StreamReadReply = redis::AsyncCommands::xread_options(
            &mut self.valkey().await,
            &[&self.stream],
            &[">"],
            &options,
        )
        .await
        .expect("XREADGROUP answers");
        reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids)
            .map(|e| e.id)
            .collect()
    }

    /// The records in the test's stream, oldest first.
    pub async fn records(&self) -> Vec<EventRecord> {
        let entries: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_all(&mut self.valkey().await, &self.stream)
                .await
                .expect("XRANGE answers");
        entries
            .ids
            .iter()
            .map(|e| {
                let payload: Vec<u8> = e.get("e").expect("an entry holds field e");
                EventRecord::decode(&payload).expect("a record this build wrote")
            })
            .collect()
    }

    /// How many entries the test's stream holds.
    pub async fn stream_len(&self) -> u64 {
        redis::AsyncCommands::xlen(&mut self.valkey().await, &self.stream)
            .await
            .expect("XLEN answers")
    }

    /// Whether the consumer group has nothing undelivered or pending
    /// within `timeout`.
    pub async fn drained(&self, timeout: Duration) -> bool {
        drained(&valkey_url(), &self.stream, &self.group, timeout).await
    }
}

async fn database_exists(admin: &DatabaseConnection, name: &str) -> bool {
    admin
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .expect("list databases")
        .is_some()
}

/// The migrated template of this schema, built if it does not exist yet.
async fn template(admin: &DatabaseConnection) -> String {
    let fingerprint = env!("FLAGMETER_SCHEMA_FINGERPRINT");
    // A template a day: what a migration derives from the date it runs
    // (the ledger's first partitions) stays as current as a real start-up's.
    let today = chrono::Utc::now().format("%Y%m%d");
    let name = format!("flagmeter_template_{fingerprint}_{today}");
    if database_exists(admin, &name).await {
        return name;
    }
    let lock = format!("SELECT pg_advisory_lock(hashtext('{name}'))");
    admin
        .execute_unprepared(&lock)
        .await
        .expect("lock the template");
    if !database_exists(admin, &name).await {
        let building = format!("{name}_building");
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{building}\""),
        ] {
            admin
                .execute_unprepared(&statement)
                .await
                .expect("create the template database");
        }
        let db = Database::connect(format!("{}/{building}", postgres_base()))
            .await
            .expect("connect to the template database");
        migration::run(&db)
            .await
            .expect("migrate the template database");
        db.close().await.ok();
        admin
            .execute_unprepared(&format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
            ))
            .await
            .expect("name the complete template");
    }
    let unlock = format!("SELECT pg_advisory_unlock(hashtext('{name}'))");
    admin
        .execute_unprepared(&unlock)
        .await
        .expect("unlock the template");
    name
}

impl Drop for TestEnv {
    /// Removes the database and stream keys, on a thread of its own because
    /// `Drop` cannot await; then fails the test if the suite tried to reach
    /// beyond this machine (unless it is failing already).
    fn drop(&mut self) {
        let database = self.database.clone();
        let keys = [self.stream.clone(), format!("{}:dead", self.stream)];
        let shard_keys = format!("{}:{{*", self.stream);
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = Database::connect(format!("{}/postgres", postgres_base())).await
                {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                        ))
                        .await;
                }
                if let Ok(client) = redis::Client::open(valkey_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let _: Result<(), _> = redis::AsyncCommands::del(&mut conn, &keys).await;
                    // The shards of a test that used several.
                    let shards: Vec<String> = redis::AsyncCommands::keys(&mut conn, &shard_keys)
                        .await
                        .unwrap_or_default();
                    if !shards.is_empty() {
                        let _: Result<(), _> = redis::AsyncCommands::del(&mut conn, &shards).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
        if !std::thread::panicking() {
            crate::offhost::assert_none();
        }
    }
}

/// A pipeline replica running in the test's process.
pub struct Replica {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    /// Builds a replica from `config` and runs it in the background.
    pub fn start(config: PipelineConfig) -> Self {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(run_pipeline(config, shutdown.clone()));
        Self { shutdown, handle }
    }

    /// Shuts the replica down and waits for it; panics if it failed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("the replica did not panic")
            .expect("the replica ran without error");
    }
}

/// Whether `group` of `stream` on the Valkey at `url` has nothing
/// undelivered or pending within `timeout` (Valkey may be down meanwhile).
pub async fn drained(url: &str, stream: &str, group: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(client) = redis::Client::open(url)
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
            && let Ok(groups) = redis::AsyncCommands::xinfo_groups::<
                _,
                redis::streams::StreamInfoGroupsReply,
            >(&mut conn, stream)
            .await
            && groups
                .groups
                .iter()
                .any(|g| g.name == group && g.pending == 0 && g.lag == Some(0))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Builds a pipeline replica and runs it until `shutdown`.
async fn run_pipeline(config: PipelineConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    Pipeline::build(config)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// A valid stream record for tests.
pub fn event(
    tenant: &str,
    id: &str,
    feature: &str,
    tokens: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> EventRecord {
    EventRecord::new(
        id.into(),
        tenant.into(),
        feature.into(),
        tokens,
        at.timestamp_millis(),
        at.timestamp_millis(),
    )
}

/// How tests create tenants on first sight: this quota, the 80 % threshold.
pub fn new_tenants(monthly_quota: i64) -> NewTenants {
    NewTenants {
        monthly_quota,
        alert_thresholds: vec![80],
    }
}
