//! The PostgreSQL tables as SeaORM entities, one module a table. The rules
//! their values follow live in `domain`; the queries that read across them
//! (usage, cost, the ledger explorer, dead letters) in `store`; the schema
//! itself in `migration`.

/// A SeaORM entity for `table`, whose `Model` has the fields given (the
/// calling module imports `sea_orm::entity::prelude::*`). None of the
/// tables relates to another as an entity (their joins are SQL), and no
/// active model adds behaviour, so those parts are the same for each.
macro_rules! table {
    ($table:tt { $($field:tt)* }) => {
        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = $table)]
        pub struct Model {
            $($field)*
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

/// A rollup table: tokens and events per tenant, feature and `$time` of
/// event time (the table's grain), the one shape of the minute and the
/// daily rollups.
macro_rules! rollup_table {
    ($table:tt, $time:ident: $time_type:ident) => {
        table!($table {
            #[sea_orm(primary_key, auto_increment = false)]
            pub tenant: String,
            #[sea_orm(primary_key, auto_increment = false)]
            pub feature: String,
            #[sea_orm(primary_key, auto_increment = false)]
            pub $time: $time_type,
            /// Which writer's partial row this is (a row per PostgreSQL connection
            /// that counted into the key, so replicas do not wait for each other's
            /// row locks); a total is the sum over the slots.
            #[sea_orm(primary_key, auto_increment = false)]
            pub slot: i16,
            pub total_tokens: i64,
            pub event_count: i64,
            /// Token classes (0 for unclassified tokens, which are `tokens` minus
            /// the classes' sum).
            pub input_tokens: i64,
            pub output_tokens: i64,
            pub cache_read_tokens: i64,
            pub cache_write_tokens: i64,
            pub updated_at: DateTimeUtc,
        });
    };
}

pub mod alerts;
pub mod api_keys;
pub mod daily_rollups;
pub mod events;
pub mod rollups;
pub mod slack_webhooks;
pub mod tenant_webhooks;
pub mod tenants;
