//! The database schema as sea-orm-migration migrations, and [`run`], which
//! applies them at start-up.
//!
//! Every api and pipeline replica migrates when it starts, often at the same
//! moment; [`run`] serialises them on a PostgreSQL advisory lock so that one
//! applies what is pending and the others find nothing left to do.

pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseConnection, TransactionTrait};

/// Implements a migration as two SQL scripts: `up` runs the first, `down`
/// the second. Each migration here is plain SQL, which says exactly what
/// the schema is.
macro_rules! sql_migration {
    ($up:expr, $down:expr) => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                manager.get_connection().execute_unprepared($up).await?;
                Ok(())
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                manager.get_connection().execute_unprepared($down).await?;
                Ok(())
            }
        }
    };
}

/// The columns of a delivery's state, the same in both outboxes (`alerts`
/// for Slack, `webhook_deliveries` for signed webhooks), which the sender
/// updates with one statement shape.
macro_rules! delivery_state_columns {
    () => {
        r#"    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'no_webhook')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()"#
    };
}

/// Declares each migration's module and hands them to [`Migrator`] in the
/// order written, so that adding a migration names it once.
macro_rules! migrations {
    ($($module:ident),+ $(,)?) => {
        $(mod $module;)+

        /// Every migration, oldest first.
        pub struct Migrator;

        #[async_trait::async_trait]
        impl MigratorTrait for Migrator {
            fn migrations() -> Vec<Box<dyn MigrationTrait>> {
                vec![$(Box::new($module::Migration)),+]
            }
        }
    };
}

migrations!(
    m20261122_000001_core_tables,
    m20261122_000002_alerts,
    m20261122_000003_api_keys,
    m20261201_000012_byte_order_keys,
    m20261201_000013_rollup_slots,
    m20261201_000014_dead_letters,
    m20261202_000020_token_classes,
    m20261202_000021_prices,
    m20261202_000022_budgets,
    m20261202_000030_signed_webhooks,
    m20261202_000031_events_explorer_index,
    m20261202_000032_tenant_timezones,
    m20261202_000033_voids,
    m20261202_000034_rollup_fillfactor,
    m20261207_000050_per_minute_limits,
    m20261207_000060_webhook_ids_and_rotation,
    m20261207_000075_key_expiry,
    m20261207_000076_deleted_tenants,
);

/// Key of the advisory lock held while migrating ("flagmeter" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0066_6c61_676d_6574;

/// Applies every pending migration, safely when many replicas start at once.
///
/// The lock is transaction-scoped, so it is released by the COMMIT (or by the
/// connection dying), never leaked in the pool. The pipeline bounds its
/// sessions' statements and lock waits (to seconds); migrating is exempt,
/// since waiting for another replica's migration is expected, and a
/// migration may be slow on a large table.
pub async fn run(db: &DatabaseConnection) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!(
        "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0;
         SET LOCAL idle_in_transaction_session_timeout = 0;
         SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
    ))
    .await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await
}
