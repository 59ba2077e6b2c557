//! `/api/tenants` and `/api/tenants/{tenant}`: a tenant's configuration
//! (name, quota, billing day, alert thresholds, budget).
//!
//! Saving a tenant re-arms its alerts in the same transaction
//! ([`alerts::rules::rearm`]): raising the quota above current usage re-arms
//! the thresholds no longer crossed, so they fire again when usage reaches
//! them; lowering it fires those now crossed at once, by an evaluation after
//! the COMMIT, as the pipeline's (`alerts::rules::evaluate`).

use chrono::{DateTime, Utc};
use domain::money::Budget;
use entity::tenants;
use poem_openapi::{
    Object, OpenApi,
    param::Path,
    payload::Json,
    types::{Example, MaybeUndefined},
};
use sea_orm::{
    ActiveModelTrait, EntityTrait, QueryOrder, QuerySelect, Set, TransactionTrait,
    sea_query::LockType,
};

use super::{DeletedResponse, admin_tenant};
use crate::{
    auth::{ApiKey, Scope},
    error::{ApiError, BodyError},
    routes::{
        ApiTags, Found, Saved, invalid,
        paging::{Limit, Offset},
        rules::{BudgetText, DisplayName, TenantSlug},
    },
    state::AppState,
};

/// A tenant's configuration, as saved. Every field is optional: an update
/// changes the fields it names and keeps the others; a new tenant takes the
/// defaults for those it omits.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct TenantIn {
    /// Display name (defaults to the tenant id): 1–200 characters, not all
    /// white space.
    #[oai(
        nullable,
        validator(min_length = 1, max_length = 200),
        deserialize_with = "fields::name"
    )]
    pub name: Option<DisplayName>,
    /// Tokens per billing period (a new tenant: `FLAGMETER_DEFAULT_QUOTA`;
    /// unchanged when absent on an update).
    #[oai(
        nullable,
        validator(minimum(value = "1")),
        deserialize_with = "fields::monthly_quota"
    )]
    pub monthly_quota: Option<i64>,
    /// Day of the month (1–28) a billing period starts, at local midnight
    /// in `timezone`.
    #[oai(
        nullable,
        validator(minimum(value = "1"), maximum(value = "28")),
        deserialize_with = "fields::billing_day"
    )]
    pub billing_day: Option<i16>,
    /// IANA time zone of the billing period, e.g. `America/New_York`
    /// (default `UTC`; unchanged when absent on an update).
    #[oai(
        nullable,
        validator(min_length = 1, max_length = 64),
        deserialize_with = "fields::timezone"
    )]
    pub timezone: Option<String>,
    /// Whole percents of the quota at which an alert fires (1–1000, at
    /// most 10, no repeats). Defaults to `FLAGMETER_ALERT_THRESHOLDS`.
    #[oai(
        nullable,
        validator(
            max_items = 10,
            unique_items = true,
            minimum(value = "1"),
            maximum(value = "1000")
        ),
        deserialize_with = "fields::alert_thresholds"
    )]
    pub alert_thresholds: Option<Vec<i32>>,
    /// Monthly budget in the deployment's currency (decimal string, e.g.
    /// `500.00`); the alert thresholds apply to it as well. Absent: kept
    /// as it is; `null`: removed.
    #[oai(nullable, deserialize_with = "fields::monthly_budget")]
    pub monthly_budget: MaybeUndefined<BudgetText>,
}

/// Every field of [`TenantIn`], named in its type errors (`monthlyBudget`
/// refuses a number: money is a decimal string).
mod fields {
    use crate::routes::rules::{BudgetText, DisplayName};
    use poem_openapi::types::MaybeUndefined;

    crate::routes::rules::named_parsers! {
        name: Option<DisplayName> = named_string("name");
        monthly_quota: Option<i64> = named_field("monthlyQuota");
        billing_day: Option<i16> = named_field("billingDay");
        timezone: Option<String> = named_string("timezone");
        alert_thresholds: Option<Vec<i32>> = named_field("alertThresholds");
        monthly_budget: MaybeUndefined<BudgetText> = named_string("monthlyBudget");
    }
}

impl Example for TenantIn {
    fn example() -> Self {
        Self {
            name: Some(DisplayName("Acme Corp".to_owned())),
            monthly_quota: Some(100_000),
            billing_day: Some(1),
            timezone: Some("America/New_York".to_owned()),
            alert_thresholds: Some(vec![80, 100]),
            monthly_budget: MaybeUndefined::Value(BudgetText("500.00".to_owned())),
        }
    }
}

/// A tenant's configuration.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub monthly_quota: i64,
    pub billing_day: i16,
    /// IANA time zone of the billing period.
    pub timezone: String,
    pub alert_thresholds: Vec<i32>,
    /// Monthly budget (decimal string), if the tenant has one.
    #[oai(skip_serializing_if_is_none)]
    pub monthly_budget: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<tenants::Model> for Tenant {
    fn from(t: tenants::Model) -> Self {
        Self {
            monthly_budget: t.budget().map(|b| b.to_string()),
            id: t.id,
            name: t.name,
            monthly_quota: t.monthly_quota,
            billing_day: t.billing_day,
            timezone: t.timezone,
            alert_thresholds: t.alert_thresholds,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// One page of tenants, in id order.
#[derive(Debug, Object)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    pub limit: u64,
    pub offset: u64,
}

/// The routes below, over the shared state.
pub struct TenantConfigApi(pub AppState);

#[OpenApi(tag = "ApiTags::Tenants")]
impl TenantConfigApi {
    /// Create or update a tenant's quota, billing day and alert thresholds:
    /// the fields sent change, the others keep their value (or, on
    /// creation, take the defaults).
    #[oai(
        path = "/api/tenants/:tenant",
        method = "put",
        operation_id = "putTenant"
    )]
    async fn save(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
        body: Json<TenantIn>,
    ) -> Result<Saved<Tenant>, BodyError> {
        auth.0.require(Scope::Admin)?;
        if let Some(name) = &body.name
            && name.trim().is_empty()
        {
            return Err(invalid("name", "must not be blank").into());
        }
        // PostgreSQL text cannot hold NUL: refused here, not by the database.
        if body.name.as_ref().is_some_and(|name| name.contains('\0')) {
            return Err(invalid("name", "must not contain NUL characters").into());
        }
        let zone = match &body.timezone {
            Some(name) => Some(
                domain::validate::timezone(name)
                    .map_err(|refused| invalid("timezone", refused.reason))?,
            ),
            None => None,
        };
        let budget = match &body.monthly_budget {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(text) => Some(Some(
                Budget::parse(text).map_err(|err| invalid("monthlyBudget", err))?,
            )),
        };
        let now = Utc::now();
        let txn = self.0.db.begin().await?;
        let current = tenants::Entity::find_by_id(tenant.as_str())
            .lock(LockType::Update)
            .one(&txn)
            .await?;
        let created = current.is_none();
        let mut row: tenants::ActiveModel = match current {
            Some(model) => model.into(),
            None => tenants::ActiveModel {
                id: Set(tenant.as_str().to_owned()),
                name: Set(tenant.as_str().to_owned()),
                monthly_quota: Set(self.0.default_quota),
                billing_day: Set(1),
                timezone: Set("UTC".to_owned()),
                alert_thresholds: Set(self.0.default_thresholds.clone()),
                created_at: Set(now),
                ..Default::default()
            },
        };
        if let Some(name) = &body.name {
            row.name = Set(name.trim().to_owned());
        }
        if let Some(quota) = body.monthly_quota {
            row.monthly_quota = Set(quota);
        }
        if let Some(day) = body.billing_day {
            row.billing_day = Set(day);
        }
        if let Some(zone) = zone {
            row.timezone = Set(zone.name().to_owned());
        }
        if let Some(thresholds) = &body.alert_thresholds {
            let mut sorted = thresholds.clone();
            sorted.sort_unstable();
            row.alert_thresholds = Set(sorted);
        }
        if let Some(budget) = budget {
            row.monthly_budget_micros = Set(budget.map(Budget::micros));
        }
        row.updated_at = Set(now);
        let saved = if created {
            row.insert(&txn).await?
        } else {
            row.update(&txn).await?
        };
        alerts::rules::rearm(&txn, saved.clone(), now).await?;
        txn.commit().await?;
        // After the COMMIT, as the pipeline does, so that it also sees tokens
        // a replica committed meanwhile with the old settings in mind.
        alerts::rules::evaluate(&self.0.db, std::slice::from_ref(&saved.id), now).await?;
        Ok(Saved::new(created, saved.into()))
    }

    /// A tenant's configuration.
    #[oai(
        path = "/api/tenants/:tenant",
        method = "get",
        operation_id = "getTenant"
    )]
    async fn get(&self, auth: ApiKey, tenant: Path<TenantSlug>) -> Result<Found<Tenant>, ApiError> {
        let existing = admin_tenant(&self.0.db, &auth, &tenant).await?;
        Ok(Found::Ok(Json(existing.into())))
    }

    /// Every tenant's configuration, a page at a time, in id order.
    #[oai(path = "/api/tenants", method = "get", operation_id = "listTenants")]
    async fn list(
        &self,
        auth: ApiKey,
        /// Most tenants to return (1–1000).
        limit: Limit,
        /// Tenants to skip (at most 2^53 − 1, the largest
        /// integer every JSON client holds exactly; the database's limit is
        /// 2^63 − 1).
        offset: Offset,
    ) -> Result<Found<TenantPage>, ApiError> {
        auth.0.require(Scope::Admin)?;
        let tenants = tenants::Entity::find()
            .order_by_asc(tenants::Column::Id)
            .limit(limit.0)
            .offset(offset.0)
            .all(&self.0.db)
            .await?;
        Ok(Found::Ok(Json(TenantPage {
            tenants: tenants.into_iter().map(Tenant::from).collect(),
            limit: limit.0,
            offset: offset.0,
        })))
    }

    /// Delete a tenant's configuration and webhooks: its alerts stop. Its
    /// billing history stays readable (usage, time series, events, alert
    /// history), under the configuration it had; a later `PUT` or event
    /// creates it afresh with the defaults.
    #[oai(
        path = "/api/tenants/:tenant",
        method = "delete",
        operation_id = "deleteTenant"
    )]
    async fn delete(
        &self,
        auth: ApiKey,
        tenant: Path<TenantSlug>,
    ) -> Result<DeletedResponse, ApiError> {
        auth.0.require(Scope::Admin)?;
        let txn = self.0.db.begin().await?;
        if !store::tenants::delete(&txn, &tenant).await? {
            return Err(ApiError::unknown_tenant(&tenant));
        }
        txn.commit().await?;
        Ok(DeletedResponse::Deleted)
    }
}
