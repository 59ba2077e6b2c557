//! `slack_webhooks`: where a tenant's quota alerts are posted.

use sea_orm::entity::prelude::*;

table!("slack_webhooks" {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    /// A secret: whoever has it can post to the channel. Never log it.
    pub url: String,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
});
