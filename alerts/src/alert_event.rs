//! What a tenant's own webhook receives when an alert fires: one JSON
//! object, signed per Standard Webhooks ([`crate::signing`]).
//!
//! `kind` says which limit was crossed: the alert row's `kind`, `quota` or
//! `budget` (a budget alert's `usageTokens` and `quota` are the period's
//! tokens and quota when its cost crossed the threshold; its `cost`,
//! `budget` and `currency` say what crossed what).

use chrono::{DateTime, SecondsFormat, Utc};
use entity::alerts::Kind;
use sea_orm::{ActiveEnum, FromQueryResult, prelude::Uuid};
use serde_json::json;

/// The `type` of every alert delivery.
pub const EVENT_TYPE: &str = "alert.threshold_crossed";

/// What every `webhook-id` starts with.
pub const MESSAGE_ID_PREFIX: &str = "msg_";

/// One fired alert, as delivered; read from its `alerts` row.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct AlertEvent {
    /// The alert row.
    #[sea_orm(alias = "id")]
    pub alert_id: i64,
    /// Made when the alert was recorded: the message id, stable across
    /// retries and unique across databases.
    pub message_id: Uuid,
    pub kind: Kind,
    pub tenant: String,
    pub threshold: i32,
    pub usage_tokens: i64,
    pub quota: i64,
    /// A budget alert's cost and budget at the crossing (exact decimal
    /// strings); none for a quota alert.
    pub cost: Option<String>,
    pub budget: Option<String>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

impl AlertEvent {
    /// `webhook-id`: `msg_` and the alert's UUIDv7, one per tenant, period,
    /// threshold and kind; a re-armed alert that fires again is a new
    /// message.
    pub fn webhook_id(&self) -> String {
        format!("{MESSAGE_ID_PREFIX}{}", self.message_id)
    }

    /// The body, exactly as signed and sent; a budget alert's cost and
    /// budget are in `currency`, the deployment's.
    pub fn body(&self, currency: &str) -> Vec<u8> {
        let instant = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut body = json!({
            "type": EVENT_TYPE,
            "kind": self.kind.to_value(),
            "tenant": self.tenant,
            "threshold": self.threshold,
            "usageTokens": self.usage_tokens,
            "quota": self.quota,
            "periodStart": instant(&self.period_start),
            "periodEnd": instant(&self.period_end),
        });
        if let (Kind::Budget, Some(cost), Some(budget)) = (self.kind, &self.cost, &self.budget) {
            body["cost"] = json!(cost);
            body["budget"] = json!(budget);
            body["currency"] = json!(currency);
        }
        body.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota_alert() -> AlertEvent {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        AlertEvent {
            alert_id: 7,
            message_id: Uuid::parse_str("019b76da-a800-75ee-825e-096275a7ab42").unwrap(),
            kind: Kind::Quota,
            tenant: "acme".into(),
            threshold: 80,
            usage_tokens: 850,
            quota: 1000,
            cost: None,
            budget: None,
            period_start: at("2026-11-01T04:00:00Z"),
            period_end: at("2026-12-01T05:00:00Z"),
        }
    }

    #[test]
    fn the_body_carries_every_contract_field() {
        let event = quota_alert();
        let body: serde_json::Value = serde_json::from_slice(&event.body("USD")).unwrap();
        assert_eq!(
            body,
            json!({"type": "alert.threshold_crossed", "kind": "quota", "tenant": "acme",
                   "threshold": 80, "usageTokens": 850, "quota": 1000,
                   "periodStart": "2026-11-01T04:00:00Z", "periodEnd": "2026-12-01T05:00:00Z"})
        );
        assert_eq!(
            event.webhook_id(),
            "msg_019b76da-a800-75ee-825e-096275a7ab42"
        );
    }

    #[test]
    fn a_budget_alert_says_what_it_cost_of_which_budget_in_which_currency() {
        let event = AlertEvent {
            kind: Kind::Budget,
            cost: Some("4.700000".into()),
            budget: Some("5.000000".into()),
            ..quota_alert()
        };
        let body: serde_json::Value = serde_json::from_slice(&event.body("EUR")).unwrap();
        assert_eq!(body["kind"], "budget");
        assert_eq!(body["cost"], "4.700000");
        assert_eq!(body["budget"], "5.000000");
        assert_eq!(body["currency"], "EUR");
    }
}
