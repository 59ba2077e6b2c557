//! Validation of everything a client names: tenants, features, event ids,
//! token counts and event times.
//!
//! Each rule returns a [`Invalid`] that says which field broke which rule, so
//! that the api can answer a 400 naming the problem and the pipeline can give
//! a dead letter a reason.

use chrono::{DateTime, Duration, Utc};

/// Largest token count one event may carry.
pub const MAX_TOKENS: i64 = 1_000_000_000;
/// How far in the past an event time may lie (also the ledger's dedupe window).
pub const MAX_BACKDATE: Duration = Duration::days(35);
/// How far in the future an event time may lie (clock skew allowance).
pub const MAX_FUTURE: Duration = Duration::minutes(5);
/// Longest tenant slug.
pub const TENANT_MAX_LEN: usize = 64;
/// Longest feature name.
pub const FEATURE_MAX_LEN: usize = 128;
/// Longest client event id.
pub const EVENT_ID_MAX_LEN: usize = 128;
/// The tenant rule as a regular expression, for the OpenAPI document.
pub const TENANT_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
/// The feature rule as a regular expression, for the OpenAPI document.
pub const FEATURE_PATTERN: &str = "^[!-~]{1,128}$";
/// The event id rule as a regular expression, for the OpenAPI document.
pub const EVENT_ID_PATTERN: &str = "^[ -~]{1,128}$";

/// A field that broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The field's name as clients spell it.
    pub field: &'static str,
    /// What is wrong with it, in words a client can act on.
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// `tenant`: 1–64 of `[A-Za-z0-9._-]`, starting alphanumeric.
pub fn tenant(value: &str) -> Result<(), Invalid> {
    let mut chars = value.chars();
    match chars.next() {
        None => return Err(Invalid::new("tenant", "must not be empty")),
        Some(first) if !first.is_ascii_alphanumeric() => {
            return Err(Invalid::new("tenant", "must start with a letter or digit"));
        }
        Some(_) => {}
    }
    if value.len() > TENANT_MAX_LEN {
        return Err(Invalid::new(
            "tenant",
            format!("must be at most {TENANT_MAX_LEN} characters"),
        ));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(Invalid::new(
            "tenant",
            "may contain only letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

/// `feature`: 1–128 printable ASCII characters without spaces.
pub fn feature(value: &str) -> Result<(), Invalid> {
    printable("feature", value, FEATURE_MAX_LEN, false)
}

/// `id`: 1–128 printable ASCII characters.
pub fn event_id(value: &str) -> Result<(), Invalid> {
    printable("id", value, EVENT_ID_MAX_LEN, true)
}

fn printable(
    field: &'static str,
    value: &str,
    max_len: usize,
    space_allowed: bool,
) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(Invalid::new(
            field,
            format!("must be at most {max_len} characters"),
        ));
    }
    let allowed = |b: u8| b.is_ascii_graphic() || (space_allowed && b == b' ');
    if !value.bytes().all(allowed) {
        let what = if space_allowed {
            "printable ASCII"
        } else {
            "printable ASCII without spaces"
        };
        return Err(Invalid::new(field, format!("may contain only {what}")));
    }
    Ok(())
}

/// `tokens`: a whole number from 1 to [`MAX_TOKENS`].
pub fn tokens(value: i64) -> Result<(), Invalid> {
    if (1..=MAX_TOKENS).contains(&value) {
        Ok(())
    } else {
        Err(Invalid::new(
            "tokens",
            format!("must be from 1 to {MAX_TOKENS}"),
        ))
    }
}

/// A token class (`inputTokens`, ...): a whole number from 0 to [`MAX_TOKENS`].
pub fn class_tokens(field: &'static str, value: i64) -> Result<(), Invalid> {
    if (0..=MAX_TOKENS).contains(&value) {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!("must be from 0 to {MAX_TOKENS}"),
        ))
    }
}

/// An event's `tokens` from what the client sent: `tokens` alone
/// (unclassified), the classes alone (their sum), or both (`tokens` must
/// equal the sum). Each class obeys [`class_tokens`], the total [`tokens`].
pub fn event_tokens(tokens: Option<i64>, classes: &TokenClasses) -> Result<i64, Invalid> {
    for (field, value) in classes.named() {
        if let Some(value) = value {
            class_tokens(field, value)?;
        }
    }
    let total = match (tokens, classes.sum()) {
        (None, None) => {
            return Err(Invalid::new(
                "tokens",
                "required unless inputTokens, outputTokens, cacheReadTokens or cacheWriteTokens are given",
            ));
        }
        (Some(tokens), None) => tokens,
        (None, Some(sum)) => sum,
        (Some(tokens), Some(sum)) if tokens == sum => tokens,
        (Some(tokens), Some(sum)) => {
            return Err(Invalid::new(
                "tokens",
                format!(
                    "is {tokens} but the token classes sum to {sum}; send one or make them agree"
                ),
            ));
        }
    };
    self::tokens(total)?;
    Ok(total)
}

/// The token classes of one event as a client sent them: each present or
/// not. An event with none is unclassified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenClasses {
    pub input: Option<i64>,
    pub output: Option<i64>,
    pub cache_read: Option<i64>,
    pub cache_write: Option<i64>,
}

impl TokenClasses {
    /// Each class with its field name as clients spell it.
    pub fn named(&self) -> [(&'static str, Option<i64>); 4] {
        [
            ("inputTokens", self.input),
            ("outputTokens", self.output),
            ("cacheReadTokens", self.cache_read),
            ("cacheWriteTokens", self.cache_write),
        ]
    }

    /// The sum of the classes given; `None` when none is. Saturates (each
    /// class is checked against its range before the sum is used).
    pub fn sum(&self) -> Option<i64> {
        self.named()
            .into_iter()
            .filter_map(|(_, value)| value)
            .reduce(i64::saturating_add)
    }
}

/// `timestamp`: at most [`MAX_BACKDATE`] before and [`MAX_FUTURE`] after `now`.
pub fn occurred_at(value: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Invalid> {
    if value < now - MAX_BACKDATE {
        return Err(Invalid::new(
            "timestamp",
            "must be at most 35 days in the past",
        ));
    }
    if value > now + MAX_FUTURE {
        return Err(Invalid::new(
            "timestamp",
            "must be at most 5 minutes in the future",
        ));
    }
    Ok(())
}

/// `timezone`: an IANA time zone name the tz database knows, such as
/// `America/New_York` or `UTC`.
pub fn timezone(value: &str) -> Result<chrono_tz::Tz, Invalid> {
    value.parse().map_err(|_| {
        Invalid::new(
            "timezone",
            "must be an IANA time zone name, such as America/New_York or UTC",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rule_accepts_slugs_and_refuses_everything_else() {
        for ok in ["a", "acme-corp", "Globex.Inc_2", "0", &"x".repeat(64)] {
            assert_eq!(tenant(ok), Ok(()), "{ok:?} should pass");
        }
        for bad in [
            "",
            "-acme",
            ".x",
            "_x",
            "acme corp",
            "acme/corp",
            "é",
            &"x".repeat(65),
        ] {
            assert!(tenant(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn feature_rule_accepts_model_names_and_refuses_spaces_and_controls() {
        for ok in [
            "gpt-4o",
            "anthropic/claude-3.5-sonnet",
            "a:b@c!~",
            &"f".repeat(128),
        ] {
            assert_eq!(feature(ok), Ok(()), "{ok:?} should pass");
        }
        for bad in ["", "gpt 4", "tab\there", "nl\n", "ü", &"f".repeat(129)] {
            assert!(feature(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn event_id_rule_allows_spaces_but_not_controls() {
        assert_eq!(event_id("order 42 / call 7"), Ok(()));
        assert!(event_id("").is_err());
        assert!(event_id("\u{7f}").is_err());
        assert!(event_id(&"i".repeat(129)).is_err());
    }

    #[test]
    fn token_range_is_one_to_a_billion() {
        assert!(tokens(0).is_err());
        assert!(tokens(-5).is_err());
        assert_eq!(tokens(1), Ok(()));
        assert_eq!(tokens(MAX_TOKENS), Ok(()));
        assert!(tokens(MAX_TOKENS + 1).is_err());
    }

    #[test]
    fn tokens_are_the_classes_sum_or_must_equal_it() {
        let classes = TokenClasses {
            input: Some(100),
            output: Some(20),
            ..Default::default()
        };
        assert_eq!(event_tokens(None, &classes), Ok(120));
        assert_eq!(event_tokens(Some(120), &classes), Ok(120));
        assert_eq!(
            event_tokens(Some(121), &classes).unwrap_err().field,
            "tokens"
        );
        assert_eq!(event_tokens(Some(7), &TokenClasses::default()), Ok(7));
        assert_eq!(
            event_tokens(None, &TokenClasses::default())
                .unwrap_err()
                .field,
            "tokens"
        );
        let zero = TokenClasses {
            cache_read: Some(0),
            ..Default::default()
        };
        assert_eq!(event_tokens(None, &zero).unwrap_err().field, "tokens");
        let negative = TokenClasses {
            output: Some(-1),
            ..classes
        };
        assert_eq!(
            event_tokens(None, &negative).unwrap_err().field,
            "outputTokens"
        );
        let huge = TokenClasses {
            cache_write: Some(MAX_TOKENS + 1),
            ..Default::default()
        };
        assert_eq!(
            event_tokens(None, &huge).unwrap_err().field,
            "cacheWriteTokens"
        );
        let too_many = TokenClasses {
            input: Some(MAX_TOKENS),
            output: Some(1),
            ..Default::default()
        };
        assert_eq!(event_tokens(None, &too_many).unwrap_err().field, "tokens");
    }

    #[test]
    fn event_time_window_is_35_days_back_and_5_minutes_ahead() {
        let now = Utc::now();
        assert_eq!(occurred_at(now, now), Ok(()));
        assert_eq!(occurred_at(now - MAX_BACKDATE, now), Ok(()));
        assert_eq!(occurred_at(now + MAX_FUTURE, now), Ok(()));
        assert!(occurred_at(now - MAX_BACKDATE - Duration::seconds(1), now).is_err());
        assert!(occurred_at(now + MAX_FUTURE + Duration::seconds(1), now).is_err());
    }
}
