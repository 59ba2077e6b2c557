//! `rollups`: tokens and events per tenant, feature and minute of event time.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rollups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub feature: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub minute: DateTimeUtc,
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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
