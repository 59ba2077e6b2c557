//! The Slack message (Block Kit with a plain-text fallback) and the HTTP
//! client that posts it to an incoming webhook, and signed alerts to a
//! tenant's own webhook ([`crate::alert_event`]): both destinations get the
//! same timeouts and the same reading of the answer.
//!
//! The client has short timeouts and follows no redirects: a webhook that
//! redirects elsewhere would get around the host allow-list.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{
    RequestBuilder, StatusCode, Url,
    header::{CONTENT_TYPE, RETRY_AFTER},
    redirect::Policy,
};
use serde_json::{Value, json};

use crate::signing::SignedDelivery;

/// What the message says.
#[derive(Debug, Clone)]
pub struct AlertMessage {
    pub tenant: String,
    pub tenant_name: String,
    pub threshold: i32,
    pub usage_tokens: i64,
    pub quota: i64,
    pub period_end: DateTime<Utc>,
    /// Largest features first; the first few are shown.
    pub top_features: Vec<(String, i64)>,
    /// Set for a budget alert: the cost crossed the threshold of the
    /// budget, not the tokens of the quota.
    pub spend: Option<Spend>,
}

/// A budget alert's figures, as exact decimal strings, in `currency`.
#[derive(Debug, Clone)]
pub struct Spend {
    pub cost: String,
    pub budget: String,
    pub currency: String,
}

impl Spend {
    /// For display only; the crossing itself was decided in exact integers.
    fn percent(&self) -> f64 {
        let (cost, budget) = (
            self.cost.parse::<f64>().unwrap_or(0.0),
            self.budget.parse::<f64>().unwrap_or(f64::INFINITY),
        );
        cost * 100.0 / budget
    }
}

/// How many features the message lists.
const TOP_FEATURES: usize = 5;

/// `1234567` → `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Escapes the three characters Slack's mrkdwn treats as control.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl AlertMessage {
    fn percent(&self) -> f64 {
        self.usage_tokens as f64 * 100.0 / self.quota as f64
    }

    /// The plain-text fallback (notifications, clients without blocks).
    pub fn text(&self) -> String {
        if let Some(spend) = &self.spend {
            return format!(
                "FlagMeter budget alert: {} has spent {:.1}% of its monthly budget ({} / {} {}), \
                 crossing the {}% budget alert threshold. The billing period ends {}.",
                self.tenant_name,
                spend.percent(),
                spend.cost,
                spend.budget,
                spend.currency,
                self.threshold,
                self.period_end.format("%Y-%m-%d %H:%M UTC"),
            );
        }
        format!(
            "FlagMeter: {} has used {:.1}% of its monthly token quota ({} / {} tokens), \
             crossing the {}% alert threshold. The billing period ends {}.",
            self.tenant_name,
            self.percent(),
            thousands(self.usage_tokens),
            thousands(self.quota),
            self.threshold,
            self.period_end.format("%Y-%m-%d %H:%M UTC"),
        )
    }

    /// The Block Kit payload, with `text` as its fallback.
    pub fn payload(&self) -> Value {
        let name = escape(&self.tenant_name);
        let features = if self.top_features.is_empty() {
            "_none counted yet_".to_owned()
        } else {
            self.top_features
                .iter()
                .take(TOP_FEATURES)
                .map(|(feature, tokens)| {
                    format!("• `{}`: {} tokens", escape(feature), thousands(*tokens))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (header, figures) = match &self.spend {
            Some(spend) => (
                format!(
                    "{} passed {}% of its budget",
                    self.tenant_name, self.threshold
                ),
                format!(
                    "*Budget alert: cost*\n{} / {} {} ({:.1}%)",
                    spend.cost,
                    spend.budget,
                    spend.currency,
                    spend.percent()
                ),
            ),
            None => (
                format!(
                    "{} passed {}% of its token quota",
                    self.tenant_name, self.threshold
                ),
                format!(
                    "*Usage*\n{} / {} tokens ({:.1}%)",
                    thousands(self.usage_tokens),
                    thousands(self.quota),
                    self.percent()
                ),
            ),
        };
        json!({
            "text": self.text(),
            "blocks": [
                {
                    "type": "header",
                    "text": { "type": "plain_text", "text": header }
                },
                {
                    "type": "section",
                    "fields": [
                        { "type": "mrkdwn", "text": figures },
                        {
                            "type": "mrkdwn",
                            "text": format!("*Period ends*\n{}", self.period_end.format("%Y-%m-%d %H:%M UTC")),
                        }
                    ]
                },
                {
                    "type": "section",
                    "text": { "type": "mrkdwn", "text": format!("*Top features*\n{features}") }
                },
                {
                    "type": "context",
                    "elements": [{
                        "type": "mrkdwn",
                        "text": format!("{name} (`{}`) · threshold {}% · FlagMeter", escape(&self.tenant), self.threshold),
                    }]
                }
            ]
        })
    }
}

/// The message `POST /api/tenants/{tenant}/slack-webhook/test` sends.
pub fn test_payload(tenant_name: &str) -> Value {
    let text =
        format!("FlagMeter test message: quota alerts for {tenant_name} will be posted here.");
    json!({
        "text": text,
        "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": escape(&text) } }]
    })
}

/// What Slack (or a tenant's webhook) answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: the message is posted.
    Delivered,
    /// 429, with the wait Slack asked for.
    RateLimited(Option<Duration>),
    /// 5xx, a timeout or a connection failure: worth another try.
    Transient(String),
    /// Any other 4xx (revoked webhook, archived channel, bad payload): no
    /// retry will help.
    Permanent(String),
}

/// Posts messages to Slack incoming webhooks and to tenants' own webhooks.
#[derive(Debug, Clone)]
pub struct SlackClient {
    http: reqwest::Client,
}

impl SlackClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(Policy::none())
            .user_agent(concat!("flagmeter/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }

    /// Posts `payload` to `url` (already checked by the webhook policy).
    pub async fn post(&self, url: Url, payload: &Value) -> Answer {
        self.answer(self.http.post(url).json(payload)).await
    }

    /// Posts a signed delivery to a tenant's webhook (already checked by
    /// the webhook policy), its body exactly as signed.
    pub async fn post_signed(&self, url: Url, delivery: &SignedDelivery) -> Answer {
        let request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", delivery.timestamp.to_string())
            .header("webhook-signature", &delivery.signature)
            .body(delivery.body.clone());
        self.answer(request).await
    }

    async fn answer(&self, request: RequestBuilder) -> Answer {
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Answer::Transient(without_url(err).to_string()),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let summary = format!("{} {}", status.as_u16(), body.trim());
        if status.is_success() {
            Answer::Delivered
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            Answer::RateLimited(retry_after)
        } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            Answer::Transient(summary)
        } else {
            Answer::Permanent(summary)
        }
    }
}

/// A transport error's text without the URL, which holds the webhook secret.
fn without_url(err: reqwest::Error) -> reqwest::Error {
    err.without_url()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> AlertMessage {
        AlertMessage {
            tenant: "acme".into(),
            tenant_name: "Acme <Corp>".into(),
            threshold: 80,
            usage_tokens: 85_000,
            quota: 100_000,
            period_end: DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            top_features: vec![("gpt-4o".into(), 60_000), ("claude-3-opus".into(), 25_000)],
            spend: None,
        }
    }

    #[test]
    fn a_budget_alert_says_it_is_one() {
        let budget = AlertMessage {
            spend: Some(Spend {
                cost: "4.701234".into(),
                budget: "5.000000".into(),
                currency: "USD".into(),
            }),
            ..message()
        };
        let text = budget.text();
        assert!(text.contains("budget alert"), "{text}");
        assert!(text.contains("4.701234 / 5.000000 USD"), "{text}");
        assert!(text.contains("94.0%"), "{text}");
        let payload = budget.payload();
        assert_eq!(
            payload["blocks"][0]["text"]["text"],
            "Acme <Corp> passed 80% of its budget"
        );
        assert!(!message().text().contains("budget"));
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1_000), "-1,000");
    }

    #[test]
    fn the_fallback_text_names_tenant_threshold_usage_and_period_end() {
        let text = message().text();
        for part in [
            "Acme <Corp>",
            "85.0%",
            "85,000 / 100,000",
            "80%",
            "2026-12-01 00:00 UTC",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
    }

    #[test]
    fn the_blocks_list_top_features_and_escape_markup() {
        let payload = message().payload().to_string();
        assert!(payload.contains("gpt-4o"));
        assert!(payload.contains("60,000 tokens"));
        assert!(payload.contains("Acme &lt;Corp&gt;"), "{payload}");
        assert_eq!(message().payload()["blocks"].as_array().unwrap().len(), 4);
    }
}
