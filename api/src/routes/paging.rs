//! Paging of the list routes: `limit` and `offset` as query parameter types,
//! so that their range and default are stated once instead of in an
//! attribute on every route.
//!
//! Each is read as poem-openapi reads a `Query<u64>` carrying
//! `validator(minimum(..), maximum(..))` and a default: the spec states the
//! same schema, and a value out of range is refused with the same 400.

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    error::ParseParamError,
    param::Query,
    registry::{MetaParamIn, MetaSchema, MetaSchemaRef},
    types::{ToJSON, Type},
    validation::{Maximum, Minimum, Validator, ValidatorMeta},
};

/// A whole-number query parameter from `MIN` to `MAX`, `DEFAULT` when
/// absent.
#[derive(Debug, Clone, Copy)]
pub struct Bounded<const MIN: u64, const MAX: u64, const DEFAULT: u64>(pub u64);

/// Most items one page holds (1–1000): `DEFAULT` when absent.
pub type Limit<const DEFAULT: u64 = 100> = Bounded<1, 1000, DEFAULT>;

/// Items to skip, for the next page: at most 2^53 − 1, the largest integer
/// every JSON client holds exactly (the database's limit is 2^63 − 1).
pub type Offset = Bounded<0, 9_007_199_254_740_991, 0>;

impl<const MIN: u64, const MAX: u64, const DEFAULT: u64> Bounded<MIN, MAX, DEFAULT> {
    fn minimum() -> Minimum {
        Minimum::new(MIN as f64, false)
    }

    fn maximum() -> Maximum {
        Maximum::new(MAX as f64, false)
    }

    /// The refusal poem-openapi gives a parameter its validator refused.
    fn refuse(name: &'static str, validator: impl Validator<u64>) -> poem::Error {
        ParseParamError {
            name,
            reason: format!("verification failed. {validator}"),
        }
        .into()
    }
}

impl<'a, const MIN: u64, const MAX: u64, const DEFAULT: u64> ApiExtractor<'a>
    for Bounded<MIN, MAX, DEFAULT>
{
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    /// Absent, it is `DEFAULT`.
    const PARAM_IS_REQUIRED: bool = false;

    type ParamType = u64;
    type ParamRawType = u64;

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Query)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        let mut bounds = MetaSchema {
            default: DEFAULT.to_json(),
            ..MetaSchema::ANY
        };
        Self::minimum().update_meta(&mut bounds);
        Self::maximum().update_meta(&mut bounds);
        Some(u64::schema_ref().merge(bounds))
    }

    fn param_raw_type(&self) -> Option<&u64> {
        Some(&self.0)
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        param_opts: ExtractParamOptions<u64>,
    ) -> poem::Result<Self> {
        let name = param_opts.name;
        let options = ExtractParamOptions {
            default_value: Some(|| DEFAULT),
            ..param_opts
        };
        let Query(value) = Query::<u64>::from_request(request, body, options).await?;
        if !Self::minimum().check(&value) {
            return Err(Self::refuse(name, Self::minimum()));
        }
        if !Self::maximum().check(&value) {
            return Err(Self::refuse(name, Self::maximum()));
        }
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn schema<T: ApiExtractor<'static>>() -> Value {
        serde_json::to_value(T::param_schema_ref()).unwrap()
    }

    /// What the spec said when each route carried the range as attributes.
    #[test]
    fn the_spec_states_the_range_and_the_default() {
        assert_eq!(
            schema::<Limit>(),
            json!({"type": "integer", "format": "uint64", "default": 100,
                   "maximum": 1000.0, "minimum": 1.0})
        );
        assert_eq!(schema::<Limit<1000>>()["default"], 1000);
        assert_eq!(
            schema::<Offset>(),
            json!({"type": "integer", "format": "uint64", "default": 0,
                   "maximum": 9_007_199_254_740_991.0, "minimum": 0.0})
        );
    }
}
