//! How alerts are configured: default thresholds and the webhook allow-list
//! (read by the api when a tenant or webhook is saved, and by the pipeline),
//! and how the outbox sender retries. Each field is an environment variable
//! and a `--flag`.

use domain::setting::{InvalidSetting, require, require_at_least_one};

/// Quota alerts: shared by the api (defaults, URL checks when a webhook is
/// saved) and the pipeline (evaluation, delivery).
#[derive(Debug, Clone, clap::Args)]
pub struct AlertArgs {
    /// Default alert thresholds, in whole percents of the monthly quota.
    #[arg(long, env = "FLAGMETER_ALERT_THRESHOLDS", value_delimiter = ',', default_value = "80",
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub alert_thresholds: Vec<i32>,
    /// Hosts a Slack webhook URL may point at (comma-separated).
    #[arg(
        long,
        env = "FLAGMETER_WEBHOOK_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "hooks.slack.com"
    )]
    pub webhook_allowed_hosts: Vec<String>,
    /// Also allow plain-http webhooks. For local testing only.
    #[arg(
        long,
        env = "FLAGMETER_WEBHOOK_ALLOW_INSECURE",
        default_value_t = false
    )]
    pub webhook_allow_insecure: bool,
}

impl AlertArgs {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        require(
            !self.alert_thresholds.is_empty(),
            "FLAGMETER_ALERT_THRESHOLDS",
            "",
            "needs at least one threshold",
        )?;
        for host in &self.webhook_allowed_hosts {
            require(
                !host.trim().is_empty(),
                "FLAGMETER_WEBHOOK_ALLOWED_HOSTS",
                self.webhook_allowed_hosts.join(","),
                "must not hold an empty host",
            )?;
        }
        Ok(())
    }

    pub fn policy(&self) -> crate::webhook::WebhookPolicy {
        crate::webhook::WebhookPolicy {
            allowed_hosts: self.webhook_allowed_hosts.clone(),
            allow_insecure: self.webhook_allow_insecure,
        }
    }
}

/// Delivery of quota alerts to Slack.
#[derive(Debug, Clone, clap::Args)]
pub struct SenderArgs {
    /// Wait after a first failed delivery, in milliseconds; doubles per
    /// failure (with jitter) up to the maximum.
    #[arg(long, env = "FLAGMETER_ALERT_RETRY_BASE_MS", default_value_t = 1_000)]
    pub alert_retry_base_ms: u64,
    /// Longest wait between two delivery attempts, in milliseconds.
    #[arg(long, env = "FLAGMETER_ALERT_RETRY_MAX_MS", default_value_t = 300_000)]
    pub alert_retry_max_ms: u64,
    /// An alert still undelivered this long after it fired is marked
    /// `failed`, in seconds.
    #[arg(long, env = "FLAGMETER_ALERT_GIVE_UP_SECS", default_value_t = 86_400)]
    pub alert_give_up_secs: u64,
    /// How often to look for due alerts, in milliseconds.
    #[arg(long, env = "FLAGMETER_ALERT_POLL_MS", default_value_t = 1_000)]
    pub alert_poll_ms: u64,
}

impl SenderArgs {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        require_at_least_one([
            ("FLAGMETER_ALERT_RETRY_BASE_MS", self.alert_retry_base_ms),
            ("FLAGMETER_ALERT_GIVE_UP_SECS", self.alert_give_up_secs),
            ("FLAGMETER_ALERT_POLL_MS", self.alert_poll_ms),
        ])?;
        require(
            self.alert_retry_max_ms >= self.alert_retry_base_ms,
            "FLAGMETER_ALERT_RETRY_MAX_MS",
            self.alert_retry_max_ms,
            format!(
                "must be at least FLAGMETER_ALERT_RETRY_BASE_MS ({})",
                self.alert_retry_base_ms
            ),
        )
    }
}
