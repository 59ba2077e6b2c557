//! Test isolation against the real services: every test gets a database of
//! its own (created from scratch, migrated for real) and a stream key of its
//! own, so tests run in parallel without seeing each other, and both are
//! removed when the test is done.
//!
//! `FLAGMETER_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`)
//! and `VALKEY_URL` (default `redis://127.0.0.1:6379`) say where the
//! services are.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio_util::sync::CancellationToken;

use crate::{
    app::PipelineConfig,
    config::{DatabaseArgs, ValkeyArgs, WorkerArgs},
};

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
        let id = uuid::Uuid::now_v7().simple().to_string();
        let database = format!("flagmeter_test_{id}");
        let admin = Database::connect(format!("{}/postgres", postgres_base()))
            .await
            .expect("PostgreSQL must be reachable for the tests");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{database}\""))
            .await
            .expect("create the test database");
        admin.close().await.ok();
        let database_url = format!("{}/{database}", postgres_base());
        let db = Database::connect(&database_url)
            .await
            .expect("connect to the test database");
        migration::run(&db)
            .await
            .expect("migrate the test database");
        Self {
            database_url,
            db,
            stream: format!("flagmeter-test:{id}"),
            group: "rollups".to_owned(),
            database,
        }
    }

    pub fn valkey_args(&self) -> ValkeyArgs {
        ValkeyArgs {
            valkey_url: valkey_url(),
            stream: self.stream.clone(),
            group: self.group.clone(),
        }
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
                failpoint: None,
            },
            alerts: crate::config::AlertArgs {
                alert_thresholds: vec![80],
                webhook_allowed_hosts: vec!["127.0.0.1:*".into()],
                webhook_allow_insecure: true,
            },
            sender: crate::config::SenderArgs {
                alert_retry_base_ms: 100,
                alert_retry_max_ms: 1_000,
                alert_give_up_secs: 60,
                alert_poll_ms: 100,
            },
            tenants: Default::default(),
        }
    }

    /// Starts a pipeline replica in this process; cancel the token to stop it.
    pub fn spawn_pipeline(
        &self,
        consumer: &str,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(crate::app::run(
            self.pipeline_config(consumer),
            shutdown.clone(),
        ));
        (shutdown, handle)
    }

    /// A plain Valkey connection for looking at the stream.
    pub async fn valkey(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(valkey_url())
            .expect("valid Valkey URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Valkey must be reachable for the tests")
    }

    /// Waits until the consumer group has nothing undelivered or pending.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let mut conn = self.valkey().await;
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let groups: redis::streams::StreamInfoGroupsReply =
                redis::AsyncCommands::xinfo_groups(&mut conn, &self.stream)
                    .await
                    .expect("XINFO GROUPS");
            let idle = groups
                .groups
                .iter()
                .find(|g| g.name == self.group)
                .is_some_and(|g| g.pending == 0 && g.lag == Some(0));
            if idle {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for TestEnv {
    /// Removes the database and stream keys, on a thread of its own because
    /// `Drop` cannot await.
    fn drop(&mut self) {
        let database = self.database.clone();
        let keys = [self.stream.clone(), format!("{}:dead", self.stream)];
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
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A valid stream record for tests.
pub fn event(
    tenant: &str,
    id: &str,
    feature: &str,
    tokens: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> crate::record::EventRecord {
    crate::record::EventRecord {
        v: crate::record::VERSION,
        id: id.into(),
        tenant: tenant.into(),
        feature: feature.into(),
        tokens,
        occurred_ms: at.timestamp_millis(),
        received_ms: at.timestamp_millis(),
    }
}

/// How tests create tenants on first sight: this quota, the 80 % threshold.
pub fn new_tenants(monthly_quota: i64) -> crate::writer::NewTenants {
    crate::writer::NewTenants {
        monthly_quota,
        alert_thresholds: vec![80],
    }
}
