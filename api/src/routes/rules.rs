//! Strings whose rule the spec states as a `pattern`, checked by hand.
//!
//! poem-openapi's `pattern` validator compiles its regex on every request
//! (which cost more than half the api's CPU on ingest), and its refusal does
//! not name the field the way our 400s do. These types put the rule into the
//! OpenAPI document, so that clients and fuzzers know it.
//!
//! A type declared with `check = ...` parses: as a path or query parameter
//! (and in JSON) it holds only values that obey the domain rule
//! (`domain::validate`), so a handler cannot be handed an invalid tenant or
//! feature. Its refusal names the field with the rule's reason: a
//! parameter's by `routes::operations`, a body field's by `crate::body`,
//! which find the rule from the `pattern` ([`domain_rule`]). A type
//! without `check` only documents its rule: the body it sits in is checked
//! by the constructor that turns it into a domain value
//! (`auth::store::check`, `ingest::Submission::into_record`), which names the
//! field in its 400.

use std::{borrow::Cow, ops::Deref};

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// The characters Rust's `str::trim` removes (Unicode `White_Space`),
/// spelled out: `\s` means slightly different things to the regex engines
/// that read the spec.
macro_rules! white_space {
    () => {
        r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// Defines a string newtype whose schema carries `pattern` and lengths
/// (never empty: 1 to `max` characters).
macro_rules! ruled_string {
    (
        $(#[$doc:meta])* $name:ident,
        pattern = $pattern:expr,
        max = $max:expr,
        example = $example:expr
        $(, check = $check:path)? $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = String;
            type RawElementValueType = String;

            fn name() -> Cow<'static, str> {
                "string".into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    pattern: Some($pattern.to_owned()),
                    min_length: Some(1),
                    max_length: Some($max),
                    example: Some(Value::String($example.to_owned())),
                    ..MetaSchema::new("string")
                }))
            }

            fn as_raw_value(&self) -> Option<&String> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl $name {
            /// The value, if it obeys the rule.
            pub fn parse(value: String) -> Result<Self, domain::validate::Invalid> {
                $($check(&value)?;)?
                Ok(Self(value))
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Self::parse(value.to_owned()).map_err(|invalid| ParseError::custom(invalid))
            }
        }

        /// A JSON string only: unlike `String`, a number or a boolean is
        /// not taken for its text.
        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value.unwrap_or_default() {
                    Value::String(s) => {
                        Self::parse(s).map_err(|invalid| ParseError::custom(invalid))
                    }
                    other => Err(ParseError::expected_type(other)),
                }
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }
    };
}

ruled_string!(
    /// A tenant slug: 1–64 of `[A-Za-z0-9._-]`, starting with a letter or
    /// digit (`domain::validate::tenant`).
    TenantSlug,
    pattern = domain::validate::TENANT_PATTERN,
    max = domain::validate::TENANT_MAX_LEN,
    example = "acme-corp",
    check = domain::validate::tenant,
);

impl TenantSlug {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

ruled_string!(
    /// A tenant slug in a request body, checked by the body's constructor
    /// (`auth::store::check`), whose 400 names the field.
    TenantField,
    pattern = domain::validate::TENANT_PATTERN,
    max = domain::validate::TENANT_MAX_LEN,
    example = "acme-corp",
);

ruled_string!(
    /// A feature name: 1–128 printable ASCII characters without spaces
    /// (`domain::validate::feature`).
    FeatureName,
    pattern = domain::validate::FEATURE_PATTERN,
    max = domain::validate::FEATURE_MAX_LEN,
    example = "gpt-4o",
    check = domain::validate::feature,
);

ruled_string!(
    /// A client event id: 1–128 printable ASCII characters
    /// (`domain::validate::event_id`).
    EventId,
    pattern = domain::validate::EVENT_ID_PATTERN,
    max = domain::validate::EVENT_ID_MAX_LEN,
    example = "call-7f3a",
);

ruled_string!(
    /// A display name: 1–200 characters, not all white space.
    DisplayName,
    pattern = concat!("[^", white_space!(), "]"),
    max = 200,
    example = "Acme Corp",
);

ruled_string!(
    /// An API key's name: 1–100 characters, not all white space, without
    /// control characters (`auth::store::check`).
    KeyName,
    pattern = concat!(
        r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f",
        white_space!(),
        r"][^\x00-\x1f\x7f-\x9f]*$"
    ),
    max = 100,
    example = "acme production",
);

ruled_string!(
    /// A price per million tokens as a decimal string, e.g. `2.50`: up to 7
    /// digits before the point, up to 6 after (`domain::money`).
    PriceText,
    pattern = domain::money::PRICE_PATTERN,
    max = 14,
    example = "2.50",
);

ruled_string!(
    /// A positive amount of money as a decimal string, e.g. `500.00`: up to
    /// 12 digits before the point, up to 6 after (`domain::money`).
    BudgetText,
    pattern = domain::money::BUDGET_PATTERN,
    max = 19,
    example = "500.00",
);

/// A domain rule of a string (`domain::validate`).
pub type Rule = fn(&str) -> Result<(), domain::validate::Invalid>;

/// The domain rule a `pattern` of this module states, to check a string by
/// ([`crate::body::Schema`]) with the rule's own reason.
pub fn domain_rule(pattern: &str) -> Option<Rule> {
    match pattern {
        domain::validate::TENANT_PATTERN => Some(domain::validate::tenant),
        domain::validate::FEATURE_PATTERN => Some(domain::validate::feature),
        domain::validate::EVENT_ID_PATTERN => Some(domain::validate::event_id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern<T: Type>() -> regex::Regex {
        match T::schema_ref() {
            MetaSchemaRef::Inline(schema) => regex::Regex::new(&schema.pattern.unwrap()).unwrap(),
            MetaSchemaRef::Reference(_) => unreachable!(),
        }
    }

    /// The patterns say what the hand-written rules check.
    #[test]
    fn patterns_agree_with_the_rules() {
        let samples = [
            "",
            " ",
            "a",
            "a b",
            " a ",
            "-a",
            "a-b.c_d",
            "\t",
            "\u{a0}",
            "\u{3000}x",
            "a\u{7}b",
            "\u{85}",
            "é",
            "x\n",
            "\u{1f}",
            "~!",
            "a/b:c",
        ];
        let (tenant, feature) = (pattern::<TenantSlug>(), pattern::<FeatureName>());
        let id = pattern::<EventId>();
        let (display, key) = (pattern::<DisplayName>(), pattern::<KeyName>());
        for s in samples {
            assert_eq!(
                tenant.is_match(s),
                domain::validate::tenant(s).is_ok(),
                "tenant {s:?}"
            );
            assert_eq!(
                feature.is_match(s),
                domain::validate::feature(s).is_ok(),
                "feature {s:?}"
            );
            assert_eq!(
                id.is_match(s),
                domain::validate::event_id(s).is_ok(),
                "id {s:?}"
            );
            assert_eq!(display.is_match(s), !s.trim().is_empty(), "name {s:?}");
            let key_ok = !s.trim().is_empty() && !s.chars().any(char::is_control);
            assert_eq!(key.is_match(s), key_ok, "key name {s:?}");
        }
    }
}
