//! `tenants`: the customers being metered, with their quota and billing day.

use sea_orm::entity::prelude::*;

table!("tenants" {
    /// The slug clients send as `tenant`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub monthly_quota: i64,
    /// Day of the month (1–28) on which a billing period starts.
    pub billing_day: i16,
    /// Whole percents of the quota at which an alert fires.
    pub alert_thresholds: Vec<i32>,
    /// IANA time zone of the billing period (`UTC` by default).
    pub timezone: String,
    /// Monthly budget in micro-units of the currency (`None`: no budget).
    pub monthly_budget_micros: Option<i64>,
    /// Most tokens in any 60 seconds (`None`: no such limit).
    pub tokens_per_minute: Option<i64>,
    /// Most requests (model calls) in any 60 seconds (`None`: no such
    /// limit).
    pub requests_per_minute: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
});

impl Model {
    /// The tenant's time zone ([`domain::period::zone_named`]).
    pub fn zone(&self) -> chrono_tz::Tz {
        domain::period::zone_named(&self.timezone)
    }

    /// The tenant's billing period that contains `now`.
    pub fn period(&self, now: DateTimeUtc) -> domain::period::BillingPeriod {
        domain::period::BillingPeriod::containing(now, self.billing_day, self.zone())
    }

    /// The tenant's monthly budget, if it has one.
    pub fn budget(&self) -> Option<domain::money::Budget> {
        self.monthly_budget_micros
            .and_then(domain::money::Budget::from_micros)
    }
}
