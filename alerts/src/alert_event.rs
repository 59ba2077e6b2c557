//! What a tenant's own webhook receives when an alert fires: one JSON
//! object, signed per Standard Webhooks ([`crate::signing`]).
//!
//! `kind` says which limit was crossed: the alert row's `kind`, `quota` or
//! `budget` (a budget alert's `usageTokens` and `quota` are the period's
//! tokens and quota when its cost crossed the threshold).

use chrono::{DateTime, SecondsFormat, Utc};
use entity::alerts::Kind;
use sea_orm::{ActiveEnum, FromQueryResult};
use serde_json::json;

/// The `type` of every alert delivery.
pub const EVENT_TYPE: &str = "alert.threshold_crossed";

/// One fired alert, as delivered; read from its `alerts` row.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct AlertEvent {
    /// The alert row: its id makes the message id, stable across retries.
    #[sea_orm(alias = "id")]
    pub alert_id: i64,
    pub kind: Kind,
    pub tenant: String,
    pub threshold: i32,
    pub usage_tokens: i64,
    pub quota: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

impl AlertEvent {
    /// `webhook-id`: one per alert, so one per tenant, period, threshold
    /// and kind; a re-armed alert that fires again is a new message.
    pub fn message_id(&self) -> String {
        format!("alert_{}", self.alert_id)
    }

    /// The body, exactly as signed and sent.
    pub fn body(&self) -> Vec<u8> {
        let instant = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        json!({
            "type": EVENT_TYPE,
            "kind": self.kind.to_value(),
            "tenant": self.tenant,
            "threshold": self.threshold,
            "usageTokens": self.usage_tokens,
            "quota": self.quota,
            "periodStart": instant(&self.period_start),
            "periodEnd": instant(&self.period_end),
        })
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_every_contract_field() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let event = AlertEvent {
            alert_id: 7,
            kind: Kind::Quota,
            tenant: "acme".into(),
            threshold: 80,
            usage_tokens: 850,
            quota: 1000,
            period_start: at("2026-11-01T04:00:00Z"),
            period_end: at("2026-12-01T05:00:00Z"),
        };
        let body: serde_json::Value = serde_json::from_slice(&event.body()).unwrap();
        assert_eq!(
            body,
            json!({"type": "alert.threshold_crossed", "kind": "quota", "tenant": "acme",
                   "threshold": 80, "usageTokens": 850, "quota": 1000,
                   "periodStart": "2026-11-01T04:00:00Z", "periodEnd": "2026-12-01T05:00:00Z"})
        );
        assert_eq!(event.message_id(), "alert_7");
    }
}
