//! `alerts`: the alert outbox. One row per tenant, billing period,
//! threshold and kind (quota or budget; unique), written once the rollup transaction that crossed the
//! threshold has committed (before its entries are acknowledged), and then
//! delivered to Slack (and a signed webhook) by a sender.

use sea_orm::entity::prelude::*;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Status {
    /// Due or waiting for its next attempt.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The destination accepted the message.
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// Given up after the retry horizon, or refused for good.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Recorded, but the tenant has no enabled webhook of this kind:
    /// nothing was sent there.
    #[sea_orm(string_value = "no_webhook")]
    NoWebhook,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Kind {
    /// Tokens crossed a threshold of the monthly quota.
    #[sea_orm(string_value = "quota")]
    Quota,
    /// Cost crossed a threshold of the monthly budget.
    #[sea_orm(string_value = "budget")]
    Budget,
}

table!("alerts" {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant: String,
    pub period_start: DateTimeUtc,
    pub period_end: DateTimeUtc,
    /// Whole percent of the quota that was crossed.
    pub threshold: i32,
    /// Tokens used in the period when the threshold was crossed.
    pub usage_tokens: i64,
    /// The quota at that moment.
    pub quota: i64,
    pub status: Status,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub kind: Kind,
    /// A budget alert's cost at the crossing (exact decimal string).
    pub cost: Option<String>,
    /// A budget alert's budget at the crossing (exact decimal string).
    pub budget: Option<String>,
    /// The signed webhook's message id (`webhook-id` is `msg_` and this
    /// UUIDv7): unique across databases, the same on every retry.
    pub message_id: Uuid,
});
