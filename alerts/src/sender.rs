//! The outbox sender: delivers recorded alerts to their destinations, in
//! every pipeline replica, a few deliveries at once (its lanes, each one
//! delivery at a time), so that a slow or silent destination holds up only
//! its own lane, not every other tenant's alerts.
//!
//! An alert has up to two destinations, each with its own delivery state:
//! Slack (the state is the alert row's own) and the tenant's signed webhook
//! (a `webhook_deliveries` row, made with the alert). Both follow the one
//! policy below, so each destination gets one message per alert.
//!
//! A due delivery is claimed with `FOR UPDATE SKIP LOCKED`, so replicas
//! never send the same one at once; the row stays locked while the
//! destination is asked and is marked in the same transaction. A crash
//! after the destination answered but before the COMMIT leaves the row
//! pending, and it is sent again: at most one repeated message per crash
//! (a signed one carries the same `webhook-id`, so a receiver can tell).
//! A signed delivery is signed with the webhook's secret and with those
//! rotated out within their grace period ([`crate::signing`]).
//! Failures are retried with capped exponential backoff and jitter (the
//! destination's `Retry-After` wins for a 429) until the alert is older
//! than the give-up horizon, then marked `failed`. Pending rows survive
//! restarts: they are simply found again.
//!
//! The sender looks for due deliveries as soon as an evaluation in its
//! replica recorded an alert ([`AlertsDue::wake`]), and otherwise every
//! poll interval (which also finds retries coming due, and alerts recorded
//! elsewhere). A lane that claims a delivery wakes another before it asks
//! the destination, so that as many lanes work as there are deliveries due.
//! One delivery is given up after [`ATTEMPT_BOUND`], so that a PostgreSQL
//! connection that went silent cannot stop deliveries for good.

use std::{num::NonZeroUsize, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use entity::{alerts, tenants};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, FromQueryResult, Statement,
    TransactionTrait,
};
use store::usage::period_usage;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    alert_event::AlertEvent,
    metrics::{DELIVERED, FAILED, RETRIES},
    signing::{SigningSecrets, WebhookSecret},
    slack::{AlertMessage, Answer, SlackClient, Spend},
    webhook::WebhookPolicy,
};

/// How the sender behaves.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub policy: WebhookPolicy,
    /// Wait after the first failure; doubles each time ...
    pub retry_base: Duration,
    /// ... up to this.
    pub retry_max: Duration,
    /// An alert older than this that still fails is marked `failed`.
    pub give_up_after: Duration,
    /// How often to look for due alerts when there are none.
    pub poll: Duration,
    /// The deployment's currency (`FLAGMETER_CURRENCY`), in which budget
    /// alerts state cost and budget.
    pub currency: String,
    /// Deliveries made at once (the lanes). Each holds a PostgreSQL
    /// connection while its destination answers.
    pub in_flight: NonZeroUsize,
}

#[derive(Debug, FromQueryResult)]
struct Due {
    /// The alert itself, as a signed webhook receives it.
    #[sea_orm(nested)]
    alert: AlertEvent,
    /// Of this destination's delivery.
    attempts: i32,
    created_at: DateTime<Utc>,
    url: Option<String>,
    enabled: Option<bool>,
    /// The signed webhook's secret (none for Slack) ...
    secret: Option<String>,
    /// ... and those rotated out whose grace period has not ended, newest
    /// first.
    retired_secrets: Option<Vec<String>>,
}

const CLAIM_SLACK: &str = r#"
SELECT a.id, a.message_id, a.tenant, a.kind, a.threshold, a.usage_tokens, a.quota, a.cost,
       a.budget, a.period_start, a.period_end, a.attempts, a.created_at, w.url, w.enabled,
       NULL::text AS secret, NULL::text[] AS retired_secrets
FROM alerts a LEFT JOIN slack_webhooks w ON w.tenant = a.tenant
WHERE a.status = 'pending' AND a.next_attempt_at <= now()
ORDER BY a.next_attempt_at
LIMIT 1
FOR UPDATE OF a SKIP LOCKED
"#;

const CLAIM_WEBHOOK: &str = r#"
SELECT a.id, a.message_id, a.tenant, a.kind, a.threshold, a.usage_tokens, a.quota, a.cost,
       a.budget, a.period_start, a.period_end, d.attempts, d.created_at, w.url, w.enabled,
       w.secret,
       ARRAY(SELECT r.secret FROM tenant_webhook_retired_secrets r
             WHERE r.tenant = d.tenant AND r.expires_at > now()
             ORDER BY r.retired_at DESC) AS retired_secrets
FROM webhook_deliveries d
JOIN alerts a ON a.id = d.alert_id
LEFT JOIN tenant_webhooks w ON w.tenant = d.tenant
WHERE d.status = 'pending' AND d.next_attempt_at <= now()
ORDER BY d.next_attempt_at
LIMIT 1
FOR UPDATE OF d SKIP LOCKED
"#;

/// The update that records an attempt, for a table with delivery columns.
macro_rules! mark_sql {
    ($table:literal, $key:literal) => {
        concat!(
            "UPDATE ",
            $table,
            " SET status = $2, attempts = attempts + $3, last_error = coalesce($4, last_error),
                next_attempt_at = now() + make_interval(secs => $5),
                delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END,
                updated_at = now()
             WHERE ",
            $key,
            " = $1"
        )
    };
}

/// Where an alert is delivered; each has its own delivery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    Slack,
    /// The tenant's own webhook, signed.
    Webhook,
}

impl Destination {
    pub(crate) const ALL: [Self; 2] = [Self::Slack, Self::Webhook];

    fn claim(self) -> &'static str {
        match self {
            Self::Slack => CLAIM_SLACK,
            Self::Webhook => CLAIM_WEBHOOK,
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Self::Slack => mark_sql!("alerts", "id"),
            Self::Webhook => mark_sql!("webhook_deliveries", "alert_id"),
        }
    }

    /// For logs and error texts.
    fn name(self) -> &'static str {
        match self {
            Self::Slack => "Slack",
            Self::Webhook => "webhook",
        }
    }

    /// The metrics' `destination` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Webhook => "webhook",
        }
    }
}

/// What happened to one alert.
enum Outcome {
    Delivered,
    NoWebhook,
    Retry { error: String, after: Duration },
    Failed(String),
}

/// Longest attempt at one delivery: claiming it, the destination's answer
/// (the client gives up after 10 s), marking it and committing; the
/// transaction's own bound on pauses is 30 s. A delivery given up is
/// rolled back and found again.
pub const ATTEMPT_BOUND: Duration = Duration::from_secs(45);

/// Tells a sender that an alert was just recorded, so that it delivers it
/// at once rather than at its next poll. Cheap to clone; a wake-up that
/// comes while the sender is busy is kept for when it is done.
#[derive(Clone, Default)]
pub struct AlertsDue(Arc<Notify>);

impl AlertsDue {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Sender {
    db: DatabaseConnection,
    slack: SlackClient,
    settings: SenderSettings,
    due: AlertsDue,
}

impl Sender {
    pub fn new(db: DatabaseConnection, slack: SlackClient, settings: SenderSettings) -> Self {
        Self {
            db,
            slack,
            settings,
            due: AlertsDue::default(),
        }
    }

    /// What wakes this sender when an alert becomes due.
    pub fn alerts_due(&self) -> AlertsDue {
        self.due.clone()
    }

    /// Delivers due alerts until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let lanes = (0..self.settings.in_flight.get()).map(|_| self.lane(&shutdown));
        futures::future::join_all(lanes).await;
    }

    /// One delivery at a time, until shutdown.
    async fn lane(&self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            let attempt = tokio::time::timeout(ATTEMPT_BOUND, self.deliver_one()).await;
            let idle = match attempt {
                Ok(Ok(found)) => !found,
                Ok(Err(err)) => {
                    tracing::warn!(%err, "cannot deliver alerts; trying again shortly");
                    true
                }
                Err(_) => {
                    tracing::warn!(bound = ?ATTEMPT_BOUND, "an alert delivery took too long; trying again shortly");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.due.0.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll) => {}
                }
            }
        }
    }

    /// Claims one due delivery per destination and tries it; `false` if
    /// none was due.
    pub async fn deliver_one(&self) -> Result<bool, DbErr> {
        let mut found = false;
        for destination in Destination::ALL {
            found |= self.deliver_one_to(destination).await?;
        }
        Ok(found)
    }

    async fn deliver_one_to(&self, destination: Destination) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        // The transaction waits for the destination (up to the client's
        // 10 s timeout): the pipeline's shorter bound on pauses inside a
        // transaction would end it after the destination answered, and the
        // message would be sent again. Its lock is on the delivery row
        // only, which counting never waits for.
        txn.execute_unprepared("SET LOCAL idle_in_transaction_session_timeout = '30s'")
            .await?;
        let claim = Statement::from_string(DbBackend::Postgres, destination.claim());
        let Some(due) = Due::find_by_statement(claim).one(&txn).await? else {
            return Ok(false);
        };
        // More may be due: another lane looks while this one delivers.
        self.due.wake();
        let outcome = self.attempt(&txn, destination, &due).await?;
        self.mark(&txn, destination, &due, outcome).await?;
        txn.commit().await?;
        Ok(true)
    }

    async fn attempt<C: ConnectionTrait>(
        &self,
        db: &C,
        destination: Destination,
        due: &Due,
    ) -> Result<Outcome, DbErr> {
        let (Some(url), Some(true)) = (&due.url, due.enabled) else {
            return Ok(Outcome::NoWebhook);
        };
        let url = match self.settings.policy.check(url) {
            Ok(url) => url,
            Err(refused) => return Ok(Outcome::Failed(format!("webhook URL refused: {refused}"))),
        };
        let answer = match destination {
            Destination::Slack => {
                let message = self.message(db, due).await?;
                self.slack.post(url, &message.payload()).await
            }
            Destination::Webhook => {
                let secret = due.secret.as_deref().map(WebhookSecret::parse);
                let Some(Ok(current)) = secret else {
                    return Ok(Outcome::Failed("the webhook secret is malformed".into()));
                };
                let secrets = SigningSecrets {
                    current,
                    // The table's check holds their prefix; a key that is
                    // not base64 could only come from a hand-edited row,
                    // and the current secret still signs.
                    retired: (due.retired_secrets.iter().flatten())
                        .filter_map(|s| WebhookSecret::parse(s).ok())
                        .collect(),
                };
                let alert = &due.alert;
                let body = alert.body(&self.settings.currency);
                let delivery = secrets.delivery(alert.webhook_id(), body, Utc::now());
                self.slack.post_signed(url, &delivery).await
            }
        };
        let failures = due.attempts as usize + 1;
        let outcome = match answer {
            Answer::Delivered => Outcome::Delivered,
            Answer::RateLimited(wait) => Outcome::Retry {
                error: format!("429 rate limited by {}", destination.name()),
                after: wait.unwrap_or_else(|| self.backoff(failures)),
            },
            Answer::Transient(error) => Outcome::Retry {
                error,
                after: self.backoff(failures),
            },
            Answer::Permanent(error) => Outcome::Failed(error),
        };
        Ok(match outcome {
            Outcome::Retry { error, after } if self.past_horizon(due, after) => {
                Outcome::Failed(format!("gave up after {failures} attempts: {error}"))
            }
            other => other,
        })
    }

    fn past_horizon(&self, due: &Due, after: Duration) -> bool {
        let next = Utc::now() + after;
        let horizon = due.created_at + self.settings.give_up_after;
        next > horizon
    }

    /// The wait after the `failures`-th failed attempt.
    fn backoff(&self, failures: usize) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_base)
            // The jitter adds up to the delay again: half, to stay within.
            .with_max_delay(self.settings.retry_max / 2)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(failures.saturating_sub(1))
            .unwrap_or(self.settings.retry_max)
    }

    async fn message<C: ConnectionTrait>(&self, db: &C, due: &Due) -> Result<AlertMessage, DbErr> {
        let alert = &due.alert;
        let tenant = tenants::Entity::find_by_id(alert.tenant.as_str())
            .one(db)
            .await?;
        let tenant_name = tenant
            .as_ref()
            .map_or_else(|| alert.tenant.clone(), |t| t.name.clone());
        let top_features = match tenant {
            Some(tenant) => period_usage(db, vec![tenant], Utc::now())
                .await?
                .pop()
                .map(|u| {
                    u.by_feature
                        .into_iter()
                        .map(|f| (f.feature, f.counts.tokens))
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(AlertMessage {
            tenant: alert.tenant.clone(),
            tenant_name,
            threshold: alert.threshold,
            usage_tokens: alert.usage_tokens,
            quota: alert.quota,
            period_end: alert.period_end,
            top_features,
            spend: match alert.kind {
                alerts::Kind::Quota => None,
                alerts::Kind::Budget => Some(Spend {
                    cost: alert.cost.clone().unwrap_or_default(),
                    budget: alert.budget.clone().unwrap_or_default(),
                    currency: self.settings.currency.clone(),
                }),
            },
        })
    }

    async fn mark<C: ConnectionTrait>(
        &self,
        db: &C,
        destination: Destination,
        due: &Due,
        outcome: Outcome,
    ) -> Result<(), DbErr> {
        let (to, alert) = (destination.name(), &due.alert);
        let label = destination.label();
        let (status, attempted, error, after): (&str, i32, Option<String>, Duration) =
            match &outcome {
                Outcome::Delivered => ("delivered", 1, None, Duration::ZERO),
                Outcome::NoWebhook => ("no_webhook", 0, None, Duration::ZERO),
                Outcome::Retry { error, after } => ("pending", 1, Some(error.clone()), *after),
                Outcome::Failed(error) => ("failed", 1, Some(error.clone()), Duration::ZERO),
            };
        match &outcome {
            Outcome::Delivered => {
                tracing::info!(tenant = %alert.tenant, threshold = alert.threshold, to, "quota alert delivered");
                metrics::counter!(DELIVERED, "destination" => label).increment(1);
            }
            Outcome::NoWebhook => {
                tracing::info!(tenant = %alert.tenant, threshold = alert.threshold, to, "quota alert recorded; the tenant has no such webhook");
            }
            Outcome::Retry { error, after } => {
                tracing::warn!(tenant = %alert.tenant, threshold = alert.threshold, to, error, retry_in = ?after, "quota alert not delivered; will retry");
                metrics::counter!(RETRIES, "destination" => label).increment(1);
            }
            Outcome::Failed(error) => {
                tracing::error!(tenant = %alert.tenant, threshold = alert.threshold, to, error, "quota alert could not be delivered; giving up");
                metrics::counter!(FAILED, "destination" => label).increment(1);
            }
        }
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            destination.mark(),
            [
                alert.alert_id.into(),
                status.into(),
                attempted.into(),
                error.into(),
                after.as_secs_f64().into(),
            ],
        ))
        .await?;
        Ok(())
    }
}
