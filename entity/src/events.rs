//! `events`: the ledger of every counted event, keyed by `(tenant, id)`.
//!
//! Its primary key is what makes counting exactly-once: a redelivered event
//! conflicts here and adds nothing to the rollups.

use sea_orm::entity::prelude::*;

table!("events" {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub feature: String,
    pub tokens: i64,
    pub occurred_at: DateTimeUtc,
    pub received_at: DateTimeUtc,
    /// Token classes (0 for unclassified tokens, which are `tokens` minus
    /// the classes' sum).
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
});
