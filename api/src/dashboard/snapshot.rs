//! The dashboard's figures, read once for every viewer.
//!
//! A single task reads every tenant's period usage and last hour of minute
//! rollups once a second (three queries, however many browsers watch) and
//! publishes the result into a `watch` channel; each `/api/usage/stream`
//! connection only reads the latest value. The JSON is serialized once per
//! publication, not once per viewer. While nobody watches, nothing is read;
//! the first viewer to come wakes the reader at once rather than waiting for
//! its next tick, so that a page's first figures arrive as soon as they can
//! be read.
//!
//! A viewer gets a `snapshot` event when the figures changed and a small
//! `heartbeat` event otherwise, so that it can show how fresh its figures
//! are without receiving every tenant every second.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, stream};
use poem::web::sse::Event;
use poem_openapi::{Object, Union, types::ToJSON};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use domain::period::Tz;
use store::usage::{self, Granularity, PeriodUsage};

use crate::routes::{AlertKind, BudgetUsage, QuotaUsage};

/// How often the figures are read while someone watches.
const INTERVAL: Duration = Duration::from_secs(1);
/// Minutes in a tenant's sparkline.
const SPARKLINE_MINUTES: i64 = 60;
/// Most tenants on the dashboard (in id order); more are reported as left out.
const MAX_TENANTS: usize = 1000;
/// Where a tenant without alert thresholds is marked.
const DEFAULT_ALERT_AT: i32 = 80;
/// The reconnection delay suggested to browsers (`retry:`), in milliseconds.
const RETRY_MS: u64 = 2000;

/// Tokens one feature used in the period.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename_all = "camelCase")]
pub struct DashboardFeature {
    pub feature: String,
    pub total_tokens: i64,
    /// Exact cost of the feature's priced tokens (decimal string).
    pub cost: String,
    /// The feature's tokens with no price in force at their event time
    /// (not in `cost`).
    pub unpriced_tokens: i64,
}

/// One tenant's row on the dashboard.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename_all = "camelCase")]
pub struct DashboardTenant {
    #[oai(flatten)]
    pub quota: QuotaUsage,
    /// Exact cost of the period's priced tokens (decimal string, in the
    /// snapshot's `currency`).
    pub cost: String,
    /// Tokens with no price in force at their event time.
    pub unpriced_tokens: i64,
    #[oai(flatten)]
    pub budget: BudgetUsage,
    /// The tenant's lowest alert threshold (80 when it has none): the
    /// dashboard marks the tenant from this percentage on.
    pub alert_at: i32,
    /// The limits whose usage has reached `alertAt` percent (the quota by
    /// tokens, the budget by cost), decided in integers as alerts are:
    /// the dashboard flags the tenant when there is any.
    pub reached: Vec<AlertKind>,
    /// End of the billing period (exclusive).
    pub period_end: DateTime<Utc>,
    /// The tenant's IANA time zone, whose local midnight starts and ends
    /// its periods.
    pub timezone: String,
    /// Per-feature totals, largest first.
    pub by_feature: Vec<DashboardFeature>,
    /// Tokens per minute over the last 60 minutes, oldest first, starting
    /// at `seriesStart`; the last one is the current, unfinished minute.
    pub last_hour: Vec<i64>,
}

/// Every tenant's usage, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename_all = "camelCase")]
pub struct DashboardSnapshot {
    /// When these figures were read.
    pub as_of: DateTime<Utc>,
    /// Start of the first minute of every `lastHour`.
    pub series_start: DateTime<Utc>,
    /// Whether tenants after the first 1000 (in id order) were left out.
    pub truncated: bool,
    /// The currency of costs and budgets (`FLAGMETER_CURRENCY`).
    pub currency: String,
    /// In tenant id order.
    pub tenants: Vec<DashboardTenant>,
}

impl DashboardSnapshot {
    /// Same figures, whenever they were read.
    fn same_figures(&self, other: &Self) -> bool {
        self.series_start == other.series_start
            && self.truncated == other.truncated
            && self.currency == other.currency
            && self.tenants == other.tenants
    }
}

/// The figures were read again and have not changed.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Heartbeat {
    /// When the unchanged figures were read.
    pub as_of: DateTime<Utc>,
}

/// One message of `/api/usage/stream`, told apart by `type`.
#[derive(Debug, Clone, Union)]
#[oai(discriminator_name = "type")]
pub enum DashboardEvent {
    /// New figures (always the first message).
    #[oai(mapping = "snapshot")]
    Snapshot(DashboardSnapshot),
    /// The last figures still hold.
    #[oai(mapping = "heartbeat")]
    Heartbeat(Heartbeat),
}

/// One publication: the latest figures and a heartbeat for them, serialized.
#[derive(Debug, Clone)]
struct Published {
    /// Changes only when the figures change.
    version: u64,
    snapshot: Arc<str>,
    heartbeat: Arc<str>,
}

/// The reading end, in [`crate::state::AppState`]: one per app, cloned
/// cheaply.
#[derive(Debug, Clone)]
pub struct Snapshots {
    latest: watch::Receiver<Option<Published>>,
    watchers: Arc<AtomicUsize>,
    /// Wakes the publisher for a viewer that finds no figures.
    wake: Arc<Notify>,
}

/// The writing end, owned by the task that reads the figures.
#[derive(Debug)]
pub struct Publisher {
    /// Named in every snapshot.
    currency: Arc<str>,
    latest: watch::Sender<Option<Published>>,
    watchers: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

/// A connected viewer, counted while its stream lives.
struct Watching(Arc<AtomicUsize>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A publisher and the readers it feeds.
pub fn channel(currency: Arc<str>) -> (Publisher, Snapshots) {
    let (tx, rx) = watch::channel(None);
    let watchers = Arc::new(AtomicUsize::new(0));
    let wake = Arc::new(Notify::new());
    (
        Publisher {
            currency,
            latest: tx,
            watchers: watchers.clone(),
            wake: wake.clone(),
        },
        Snapshots {
            latest: rx,
            watchers,
            wake,
        },
    )
}

impl Snapshots {
    /// The events of one viewer: a `retry:` hint, the latest snapshot as
    /// soon as there is one, then a snapshot or a heartbeat per reading.
    /// Ends when the publisher stops (at shutdown).
    pub fn subscribe(&self) -> impl Stream<Item = Event> + Send + 'static {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        let watching = Watching(self.watchers.clone());
        if self.latest.borrow().is_none() {
            // The permit is kept until the publisher waits again.
            self.wake.notify_one();
        }
        let mut latest = self.latest.clone();
        // Whatever is there already is news to this viewer.
        latest.mark_changed();
        let updates = stream::unfold(
            (latest, None::<u64>, watching),
            |(mut latest, mut sent, watching)| async move {
                let event = loop {
                    latest.changed().await.ok()?;
                    let Some(published) = latest.borrow_and_update().clone() else {
                        continue;
                    };
                    if sent == Some(published.version) {
                        break Event::message(&*published.heartbeat);
                    }
                    sent = Some(published.version);
                    break Event::message(&*published.snapshot);
                };
                Some((event, (latest, sent, watching)))
            },
        );
        stream::once(async { Event::retry(RETRY_MS) }).chain(updates)
    }
}

impl Publisher {
    /// Reads and publishes the figures every second while someone watches
    /// (and at once for a viewer that finds none), until `shutdown`. A
    /// failed reading keeps the last figures (viewers see them age) and is
    /// logged once until readings succeed again.
    pub async fn run(self, db: DatabaseConnection, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<DashboardSnapshot> = None;
        let mut version = 0_u64;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
                // The next reading a full interval after this one.
                _ = self.wake.notified() => ticks.reset(),
            }
            if self.watchers.load(Ordering::Relaxed) == 0 {
                // Nobody to serve: forget the figures rather than show a
                // stale set to the next viewer.
                if last.take().is_some() {
                    self.latest.send_replace(None);
                }
                continue;
            }
            let snapshot = match read(&db, Utc::now(), &self.currency).await {
                Ok(snapshot) => snapshot,
                Err(err) => {
                    if !failing {
                        tracing::warn!(%err, "cannot read the dashboard figures; viewers keep the last ones");
                        failing = true;
                    }
                    continue;
                }
            };
            if failing {
                tracing::info!("dashboard figures are read again");
                failing = false;
            }
            let heartbeat = DashboardEvent::Heartbeat(Heartbeat {
                as_of: snapshot.as_of,
            })
            .to_json_string();
            let changed = last
                .as_ref()
                .is_none_or(|last| !last.same_figures(&snapshot));
            let unchanged = if changed {
                None
            } else {
                self.latest.borrow().clone()
            };
            let published = match unchanged {
                Some(previous) => Published {
                    heartbeat: heartbeat.into(),
                    ..previous
                },
                None => {
                    version += 1;
                    Published {
                        version,
                        snapshot: DashboardEvent::Snapshot(snapshot.clone())
                            .to_json_string()
                            .into(),
                        heartbeat: heartbeat.into(),
                    }
                }
            };
            self.latest.send_replace(Some(published));
            last = Some(snapshot);
        }
    }
}

/// Every tenant's figures as of `now`: period usage (two queries) and the
/// last hour per minute (one query for all tenants).
async fn read(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    currency: &str,
) -> Result<DashboardSnapshot, DbErr> {
    let mut tenants = usage::all_usage(db, now, MAX_TENANTS as u64 + 1, 0).await?;
    let truncated = tenants.len() > MAX_TENANTS;
    tenants.truncate(MAX_TENANTS);
    let series_end = Granularity::Minute.truncate(now, Tz::UTC) + Granularity::Minute.step();
    let series_start = series_end - chrono::Duration::minutes(SPARKLINE_MINUTES);
    let ids: Vec<String> = tenants.iter().map(|u| u.tenant.id.clone()).collect();
    let series = usage::minute_series(db, &ids, series_start, series_end).await?;
    Ok(DashboardSnapshot {
        as_of: now,
        series_start,
        truncated,
        currency: currency.to_owned(),
        tenants: tenants
            .into_iter()
            .zip(series)
            .map(|(period, minutes)| tenant_row(period, minutes.iter().map(|p| p.tokens).collect()))
            .collect(),
    })
}

fn tenant_row(usage: PeriodUsage, last_hour: Vec<i64>) -> DashboardTenant {
    let alert_at = usage
        .tenant
        .alert_thresholds
        .iter()
        .copied()
        .min()
        .unwrap_or(DEFAULT_ALERT_AT);
    DashboardTenant {
        quota: QuotaUsage::of(&usage),
        cost: usage.cost().to_string(),
        unpriced_tokens: usage.unpriced_tokens(),
        budget: BudgetUsage::of(&usage),
        alert_at,
        reached: reached(&usage, alert_at),
        period_end: usage.period.end,
        timezone: usage.tenant.timezone,
        by_feature: usage
            .by_feature
            .into_iter()
            .map(|f| DashboardFeature {
                feature: f.feature,
                total_tokens: f.counts.tokens,
                cost: f.cost.to_string(),
                unpriced_tokens: f.unpriced_tokens,
            })
            .collect(),
        last_hour,
    }
}

/// The limits of `usage` at or over `threshold` percent, with the very
/// comparisons that fire quota and budget alerts.
fn reached(usage: &PeriodUsage, threshold: i32) -> Vec<AlertKind> {
    let quota = alerts::rules::crossed(usage.total_tokens(), usage.tenant.monthly_quota, threshold);
    let budget = usage
        .budget()
        .is_some_and(|budget| usage.cost().reached(budget, threshold));
    [(quota, AlertKind::Quota), (budget, AlertKind::Budget)]
        .into_iter()
        .filter_map(|(reached, kind)| reached.then_some(kind))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use domain::{
        money::{Amount, Budget, PerMillion},
        period::BillingPeriod,
        pricing::Counts,
    };
    use entity::tenants;
    use store::usage::FeatureTotal;

    use super::*;

    /// `tokens` of a 100,000-token quota, priced at 10 per million tokens
    /// against a budget of 1.00 (so 1,000 tokens are 1 % of either).
    fn usage(tokens: i64) -> PeriodUsage {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        let budget = Budget::parse("1.00").unwrap();
        let cost: Amount = PerMillion::parse("10").unwrap().cost(tokens);
        PeriodUsage {
            tenant: tenants::Model {
                id: "acme".into(),
                name: "acme".into(),
                monthly_quota: 100_000,
                billing_day: 1,
                alert_thresholds: vec![80],
                timezone: "UTC".into(),
                monthly_budget_micros: Some(budget.micros()),
                created_at: at,
                updated_at: at,
            },
            period: BillingPeriod::containing(at, 1, Tz::UTC),
            by_feature: vec![FeatureTotal {
                feature: "gpt-4o".into(),
                counts: Counts {
                    events: 1,
                    tokens,
                    ..Counts::default()
                },
                cost,
                unpriced_tokens: 0,
            }],
            last_counted_at: Some(at),
        }
    }

    #[test]
    fn limits_shown_as_80_percent_but_short_of_it_have_not_reached_it() {
        let usage = usage(79_996);
        assert_eq!(usage.quota_percent(), 80.0);
        assert_eq!(BudgetUsage::of(&usage).budget_percent, Some(80.0));
        assert_eq!(reached(&usage, 80), [], "no alert fires at 79.996 %");
    }

    #[test]
    fn quota_and_budget_reach_the_threshold_as_their_alerts_fire() {
        assert_eq!(
            reached(&usage(80_000), 80),
            [AlertKind::Quota, AlertKind::Budget]
        );
        let mut without_budget = usage(80_000);
        without_budget.tenant.monthly_budget_micros = None;
        assert_eq!(reached(&without_budget, 80), [AlertKind::Quota]);
    }
}
