//! `tenant_webhooks`: a tenant's own endpoint for signed alert deliveries
//! (Standard Webhooks), beside its Slack webhook.

use sea_orm::entity::prelude::*;

table!("tenant_webhooks" {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    pub url: String,
    /// `whsec_` + base64 of the signing key. A secret: never log it.
    pub secret: String,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
});
