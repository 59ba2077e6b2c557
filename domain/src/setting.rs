//! Settings that can never work (a quota of 0, a block time that blocks
//! forever, a claim time shorter than a read) are refused at start-up, with
//! an error naming the environment variable, rather than discovered later
//! as events that cannot be counted. Each binary's settings have a
//! `validate` method built from [`require`] (and [`require_at_least_one`],
//! the rule most counts, sizes and intervals share).

use std::fmt::Display;

/// A setting that can never work, named by its environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}={value}: {rule}")]
pub struct InvalidSetting {
    pub var: &'static str,
    pub value: String,
    pub rule: String,
}

/// `Ok` if `ok`, else the setting `var` (now `value`) breaks `rule`.
pub fn require(
    ok: bool,
    var: &'static str,
    value: impl Display,
    rule: impl Into<String>,
) -> Result<(), InvalidSetting> {
    if ok {
        return Ok(());
    }
    Err(InvalidSetting {
        var,
        value: value.to_string(),
        rule: rule.into(),
    })
}

/// `Ok` if each setting `(var, value)` is at least 1 (a count, size or
/// interval of 0 would do nothing, or spin), else the first that is not.
pub fn require_at_least_one(
    settings: impl IntoIterator<Item = (&'static str, u64)>,
) -> Result<(), InvalidSetting> {
    settings
        .into_iter()
        .try_for_each(|(var, value)| require(value >= 1, var, value, "must be at least 1"))
}
