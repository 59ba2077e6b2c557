//! `POST /api/prices` and `GET /api/prices`: effective-dated prices per
//! feature, in the deployment's currency, per million tokens of each class.
//!
//! A price is a new version, never an edit: costs are computed when usage
//! is read (`store::costing`), so a version back-dated to before events
//! already counted re-prices them, and every earlier answer can be
//! recomputed from the versions that were in force.

use chrono::{DateTime, Utc};
use domain::{
    money::{DecimalError, PerMillion},
    pricing::PriceVersion,
};
use poem_openapi::{Object, OpenApi, param::Query, payload::Json, types::Example};
use store::prices;

use super::{
    ApiTags, Created, Found, invalid,
    rules::{FeatureName, PriceText},
};
use crate::{
    auth::{ApiKey, Scope},
    error::{ApiError, BodyError},
    state::AppState,
};

/// A new price version of a feature.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct PriceIn {
    /// The feature (model) priced, as events name it.
    #[oai(deserialize_with = "named::feature")]
    pub feature: FeatureName,
    /// Price of a million input tokens (and of unclassified tokens).
    #[oai(deserialize_with = "named::input")]
    pub input_per_million: PriceText,
    /// Price of a million output tokens.
    #[oai(deserialize_with = "named::output")]
    pub output_per_million: PriceText,
    /// Price of a million cache-read tokens; defaults to the input price.
    #[oai(nullable, deserialize_with = "named::cache_read")]
    pub cache_read_per_million: Option<PriceText>,
    /// Price of a million cache-write tokens; defaults to the input price.
    #[oai(nullable, deserialize_with = "named::cache_write")]
    pub cache_write_per_million: Option<PriceText>,
    /// When the version takes effect (RFC 3339), by event time; defaults to
    /// now. It is in force until the next version's `effectiveFrom`; of two
    /// versions from the same moment, the later-created one is.
    #[oai(nullable, deserialize_with = "named::effective_from")]
    pub effective_from: Option<DateTime<Utc>>,
}

/// Field parsers whose errors name the field (see `rules::named_field`).
mod named {
    use super::*;

    crate::routes::rules::named_parsers! {
        feature: FeatureName = named_string("feature");
        input: PriceText = named_string("inputPerMillion");
        output: PriceText = named_string("outputPerMillion");
        cache_read: Option<PriceText> = named_string("cacheReadPerMillion");
        cache_write: Option<PriceText> = named_string("cacheWritePerMillion");
        effective_from: Option<DateTime<Utc>> = named_string("effectiveFrom");
    }
}

impl Example for PriceIn {
    fn example() -> Self {
        let price = |p: &str| PriceText(p.to_owned());
        Self {
            feature: FeatureName("gpt-4o".to_owned()),
            input_per_million: price("2.50"),
            output_per_million: price("10.00"),
            cache_read_per_million: Some(price("1.25")),
            cache_write_per_million: Some(price("3.125")),
            effective_from: "2026-11-01T00:00:00Z".parse().ok(),
        }
    }
}

/// One price version.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Price {
    pub id: i64,
    pub feature: String,
    #[oai(flatten)]
    pub prices: PricesByClass,
    pub currency: String,
    pub effective_from: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A version's prices per million tokens of each class (flattened into
/// [`Price`]).
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct PricesByClass {
    /// Price of a million input (and unclassified) tokens: a decimal
    /// string with 6 decimals, in `currency`.
    pub input_per_million: String,
    /// Price of a million output tokens (decimal string).
    pub output_per_million: String,
    /// Price of a million cache-read tokens (decimal string).
    pub cache_read_per_million: String,
    /// Price of a million cache-write tokens (decimal string).
    pub cache_write_per_million: String,
}

impl Price {
    fn new(v: PriceVersion, currency: &str) -> Self {
        Self {
            id: v.id,
            feature: v.feature,
            prices: PricesByClass {
                input_per_million: v.input.to_string(),
                output_per_million: v.output.to_string(),
                cache_read_per_million: v.cache_read.to_string(),
                cache_write_per_million: v.cache_write.to_string(),
            },
            currency: currency.to_owned(),
            effective_from: v.effective_from,
            created_at: v.created_at,
        }
    }
}

/// Price versions, by feature and then effective time.
#[derive(Debug, Object)]
pub struct PriceList {
    pub prices: Vec<Price>,
}

/// A price field's value, or a 400 naming the field.
fn price(field: &str, text: &str) -> Result<PerMillion, ApiError> {
    PerMillion::parse(text).map_err(|err: DecimalError| invalid(field, err))
}

/// The routes below, over the shared state.
pub struct PricesApi(pub AppState);

#[OpenApi(tag = "ApiTags::Prices")]
impl PricesApi {
    /// Add a price version for a feature.
    #[oai(path = "/api/prices", method = "post", operation_id = "createPrice")]
    async fn create(&self, auth: ApiKey, body: Json<PriceIn>) -> Result<Created<Price>, BodyError> {
        auth.0.require(Scope::Admin)?;
        let input = price("inputPerMillion", &body.input_per_million)?;
        let output = price("outputPerMillion", &body.output_per_million)?;
        let optional = |field, text: &Option<PriceText>| {
            text.as_deref().map_or(Ok(input), |text| price(field, text))
        };
        let cache_read = optional("cacheReadPerMillion", &body.cache_read_per_million)?;
        let cache_write = optional("cacheWritePerMillion", &body.cache_write_per_million)?;
        let effective_from = body.effective_from.unwrap_or_else(Utc::now);
        let new = prices::NewPrices {
            input,
            output,
            cache_read,
            cache_write,
        };
        let version = prices::add_version(&self.0.db, &body.feature, effective_from, new).await?;
        // Costs are read fresh, but a cached usage answer may still be
        // served for its short lifetime (`asOf` says how old it is).
        alerts::budget::evaluate_all(&self.0.db, Utc::now()).await?;
        Ok(Created::Created(Json(Price::new(
            version,
            &self.0.currency,
        ))))
    }

    /// The price versions of a feature, or of every feature.
    #[oai(path = "/api/prices", method = "get", operation_id = "listPrices")]
    async fn list(
        &self,
        auth: ApiKey,
        /// Only this feature's versions.
        feature: Query<Option<FeatureName>>,
    ) -> Result<Found<PriceList>, ApiError> {
        auth.0.require(Scope::Read)?;
        let versions = prices::versions(&self.0.db, feature.as_deref()).await?;
        Ok(Found::Ok(Json(PriceList {
            prices: versions
                .into_iter()
                .map(|v| Price::new(v, &self.0.currency))
                .collect(),
        })))
    }
}
