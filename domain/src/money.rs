//! Exact money: prices per million tokens and costs, in integers.
//!
//! Prices and budgets are decimal strings with at most 6 decimals, held as
//! micro-units (10⁻⁶) of the deployment's currency. A cost is tokens × price
//! per million ÷ 10⁶, so in pico-units (10⁻¹²) it is exactly tokens × price
//! in micro-units: no division, no rounding, no floating point, ever. An
//! `i128` of pico-units holds any cost the counters can reach (10¹⁸ tokens
//! at the highest price are 10³⁰ pico-units; the type goes to 1.7 × 10³⁸).
//! Costs are shown with all their decimals, at least 6 and at most 12.

use std::fmt;

/// Decimals a price or budget may have.
pub const DECIMALS: u32 = 6;
/// Micro-units in one unit of currency.
const MICROS: i64 = 1_000_000;
/// Pico-units in one micro-unit.
const PICOS_PER_MICRO: i128 = 1_000_000;
/// Integer digits of a price per million tokens (below 10 million).
const PRICE_DIGITS: usize = 7;
/// Integer digits of a budget (below a trillion).
const BUDGET_DIGITS: usize = 12;
/// A price per million tokens as a regular expression, for the OpenAPI
/// document: exactly what [`PerMillion::parse`] accepts.
pub const PRICE_PATTERN: &str = r"^(0|[1-9][0-9]{0,6})(\.[0-9]{1,6})?$";
/// A budget as a regular expression: exactly what [`Budget::parse`]
/// accepts (a positive amount).
pub const BUDGET_PATTERN: &str = r"^([1-9][0-9]{0,11}(\.[0-9]{1,6})?|0\.([1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))$";

/// A price per million tokens: from 0 to just under 10 million, at most 6
/// decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PerMillion(i64);

/// A positive amount with at most 6 decimals, below a trillion: a tenant's
/// monthly budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Budget(i64);

/// An exact amount of money, in pico-units; may be negative (what is left of
/// an overspent budget).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i128);

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("must not be negative")]
    Negative,
    #[error(
        "must be a decimal string such as \"2.50\": at most {0} digits before the point \
         (no leading zeros), at most 6 after it, no sign or exponent"
    )]
    Malformed(usize),
    #[error("must be greater than 0")]
    Zero,
    #[error(
        "cannot be held exactly: a price per token may have at most 12 decimals \
         (6 per million tokens) and must be below 10 (10 million per million)"
    )]
    Inexact,
}

/// Parses `12.345` into micro-units; refuses signs, exponents, spaces,
/// leading zeros, more than 6 decimals or `digits` integer digits.
fn parse_micros(text: &str, digits: usize) -> Result<i64, DecimalError> {
    if text.starts_with('-') {
        return Err(DecimalError::Negative);
    }
    let malformed = DecimalError::Malformed(digits);
    let (whole, fraction) = match text.split_once('.') {
        Some((_, "")) => return Err(malformed),
        Some(parts) => parts,
        None => (text, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > digits
        || (whole.len() > 1 && whole.starts_with('0'))
        || !all_digits(whole)
        || fraction.len() > DECIMALS as usize
        || !all_digits(fraction)
    {
        return Err(malformed);
    }
    // At most 12 + 6 digits: within i64.
    let whole: i64 = whole.parse().map_err(|_| malformed.clone())?;
    let fraction: i64 = match fraction {
        "" => 0,
        f => f.parse::<i64>().map_err(|_| malformed)? * 10i64.pow(DECIMALS - f.len() as u32),
    };
    Ok(whole * MICROS + fraction)
}

/// Shows micro-units with exactly 6 decimals (`2.500000`).
fn show_micros(micros: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}", Amount(i128::from(micros) * PICOS_PER_MICRO))
}

impl PerMillion {
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        parse_micros(text, PRICE_DIGITS).map(Self)
    }

    /// A price per token as a JSON number's text (`2.5e-06`, `0.0000025`,
    /// `0`), converted to the price per million tokens exactly: the
    /// decimal point moves six places, no floating point is involved, and
    /// a price that this type cannot hold exactly is refused.
    pub fn from_per_token(text: &str) -> Result<Self, DecimalError> {
        if text.starts_with('-') {
            return Err(DecimalError::Negative);
        }
        let malformed = || DecimalError::Malformed(PRICE_DIGITS);
        let (mantissa, exponent) = match text.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => {
                let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
                // Far beyond any price this type can hold either way.
                let exponent: i32 = exponent.parse().map_err(|_| malformed())?;
                if exponent.abs() > 64 {
                    return Err(DecimalError::Inexact);
                }
                (mantissa, exponent)
            }
            None => (text, 0),
        };
        let (whole, fraction) = match mantissa.split_once('.') {
            Some((_, "")) => return Err(malformed()),
            Some(parts) => parts,
            None => (mantissa, ""),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || !(fraction.is_empty() || all_digits(fraction)) {
            return Err(malformed());
        }
        // The value is `digits` × 10^`shift` per million tokens.
        let digits = format!("{whole}{fraction}");
        let shift = exponent + DECIMALS as i32 - fraction.len() as i32;
        let significant = digits.trim_start_matches('0');
        if significant.is_empty() {
            return Ok(Self(0));
        }
        let (significant, shift) = {
            let trimmed = significant.trim_end_matches('0');
            (trimmed, shift + (significant.len() - trimmed.len()) as i32)
        };
        let text = if shift >= 0 {
            if significant.len() + shift as usize > PRICE_DIGITS {
                return Err(DecimalError::Inexact);
            }
            format!("{significant}{}", "0".repeat(shift as usize))
        } else {
            let decimals = shift.unsigned_abs() as usize;
            if decimals > DECIMALS as usize {
                return Err(DecimalError::Inexact);
            }
            let padded = format!("{significant:0>width$}", width = decimals + 1);
            let (int, frac) = padded.split_at(padded.len() - decimals);
            format!("{int}.{frac}")
        };
        Self::parse(&text).map_err(|_| DecimalError::Inexact)
    }

    /// The cost of `tokens` tokens at this price.
    pub fn cost(self, tokens: i64) -> Amount {
        Amount(i128::from(tokens) * i128::from(self.0))
    }
}

impl Budget {
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        match parse_micros(text, BUDGET_DIGITS)? {
            0 => Err(DecimalError::Zero),
            micros => Ok(Self(micros)),
        }
    }

    /// A budget as stored (micro-units); `None` unless positive.
    pub fn from_micros(micros: i64) -> Option<Self> {
        (micros > 0).then_some(Self(micros))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn amount(self) -> Amount {
        Amount(i128::from(self.0) * PICOS_PER_MICRO)
    }
}

impl Amount {
    pub const ZERO: Self = Self(0);

    /// Whether this cost has reached `threshold` percent of `budget`, in
    /// integers.
    pub fn reached(self, budget: Budget, threshold: i32) -> bool {
        self.0 * 100 >= budget.amount().0 * i128::from(threshold)
    }

    /// An amount of whole micro-units.
    pub fn from_micros(micros: i64) -> Self {
        Self(i128::from(micros) * PICOS_PER_MICRO)
    }

    /// This amount in micro-units, rounded up (towards more money), so that
    /// an amount held against a budget is never smaller than the cost;
    /// saturating at the ends of `i64`.
    pub fn micros_rounded_up(self) -> i64 {
        let micros = self.0.div_euclid(PICOS_PER_MICRO)
            + i128::from(self.0.rem_euclid(PICOS_PER_MICRO) != 0);
        i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX })
    }

    /// This cost as a percentage of `budget`, to two decimals, for display.
    pub fn percent_of(self, budget: Budget) -> f64 {
        let percent = self.0 as f64 * 100.0 / budget.amount().0 as f64;
        (percent * 100.0).round() / 100.0
    }
}

impl std::ops::Add for Amount {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self(self.0 + other.0)
    }
}

impl std::ops::Sub for Amount {
    type Output = Self;
    fn sub(self, other: Self) -> Self {
        Self(self.0 - other.0)
    }
}

impl std::ops::AddAssign for Amount {
    fn add_assign(&mut self, other: Self) {
        self.0 += other.0;
    }
}

impl std::iter::Sum for Amount {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, |a, b| a + b)
    }
}

/// All decimals of the amount, at least 6: `4.700000`, `4.701234`,
/// `0.000000000025`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PICOS: u128 = 1_000_000_000_000;
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let fraction = format!("{:012}", abs % PICOS);
        let kept = fraction.trim_end_matches('0').len().max(DECIMALS as usize);
        write!(f, "{sign}{}.{}", abs / PICOS, &fraction[..kept])
    }
}

impl fmt::Display for PerMillion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_micros(self.0, f)
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_micros(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_exactly_and_refuse_everything_else() {
        assert_eq!(PerMillion::parse("2.50").unwrap().to_string(), "2.500000");
        assert_eq!(PerMillion::parse("3.125").unwrap().to_string(), "3.125000");
        assert_eq!(PerMillion::parse("0").unwrap().to_string(), "0.000000");
        assert_eq!(
            PerMillion::parse("9999999.999999").unwrap().0,
            9_999_999_999_999
        );
        assert_eq!(
            Budget::parse("999999999999.999999").unwrap().to_string(),
            "999999999999.999999"
        );
        assert_eq!(PerMillion::parse("-1"), Err(DecimalError::Negative));
        for bad in [
            "",
            ".5",
            "5.",
            "1e3",
            " 1",
            "1,5",
            "0x10",
            "1.1234567",
            "+1",
            "NaN",
            "1.2.3",
            "01",
            "10000000",
        ] {
            assert_eq!(
                PerMillion::parse(bad),
                Err(DecimalError::Malformed(7)),
                "{bad:?}"
            );
        }
        assert_eq!(Budget::parse("0.000"), Err(DecimalError::Zero));
        assert_eq!(Budget::parse("0"), Err(DecimalError::Zero));
    }

    #[test]
    fn prices_per_token_become_prices_per_million_exactly() {
        let per_million = |text| PerMillion::from_per_token(text).map(|p| p.to_string());
        for (per_token, expected) in [
            ("2.5e-06", "2.500000"),
            ("2.5E-6", "2.500000"),
            ("0.0000025", "2.500000"),
            ("1.25e-07", "0.125000"),
            ("3e-06", "3.000000"),
            ("0.00006", "60.000000"),
            ("1e-12", "0.000001"),
            ("0", "0.000000"),
            ("0.0", "0.000000"),
            ("0e0", "0.000000"),
            ("9.999999999999", "9999999.999999"),
            ("1.0e-05", "10.000000"),
            ("1e+0", "1000000.000000"),
        ] {
            assert_eq!(
                per_million(per_token).as_deref(),
                Ok(expected),
                "{per_token}"
            );
        }
        for inexact in ["1e-13", "3.3333333333333e-06", "10", "1e1", "1e-99999"] {
            assert_eq!(
                PerMillion::from_per_token(inexact),
                Err(DecimalError::Inexact),
                "{inexact}"
            );
        }
        assert_eq!(
            PerMillion::from_per_token("-1e-06"),
            Err(DecimalError::Negative)
        );
        for bad in ["", ".5", "5.", "1e", "e5", "0x1", "1,5", "\"1\"", "NaN"] {
            assert_eq!(
                PerMillion::from_per_token(bad),
                Err(DecimalError::Malformed(7)),
                "{bad}"
            );
        }
    }

    /// The patterns in the spec accept exactly what the parsers accept.
    #[test]
    fn patterns_agree_with_the_parsers() {
        let price = regex_lite(PRICE_PATTERN);
        let budget = regex_lite(BUDGET_PATTERN);
        for s in [
            "0",
            "0.0",
            "0.000000",
            "0.0000001",
            "0.000001",
            "0.10",
            "1",
            "1.5",
            "01",
            "00.1",
            ".5",
            "5.",
            "-1",
            "9999999",
            "10000000",
            "1234567.123456",
            "9999999999999",
            "10000000000000",
            "0.00000",
            "0.000010",
            "0.1000000",
        ] {
            assert_eq!(price(s), PerMillion::parse(s).is_ok(), "price {s:?}");
            assert_eq!(budget(s), Budget::parse(s).is_ok(), "budget {s:?}");
        }
    }

    fn regex_lite(pattern: &'static str) -> impl Fn(&str) -> bool {
        let regex = regex::Regex::new(pattern).unwrap();
        move |s| regex.is_match(s)
    }

    #[test]
    fn costs_are_exact_and_shown_with_at_least_six_decimals() {
        let input = PerMillion::parse("2.50").unwrap();
        let output = PerMillion::parse("10.00").unwrap();
        let cache_read = PerMillion::parse("1.25").unwrap();
        let cost = input.cost(1_000_000) + output.cost(100_000) + cache_read.cost(200_000);
        assert_eq!(cost.to_string(), "3.750000");
        assert_eq!(
            PerMillion::parse("1").unwrap().cost(1_234).to_string(),
            "0.001234"
        );
        assert_eq!(
            PerMillion::parse("0.000025").unwrap().cost(1).to_string(),
            "0.000000000025"
        );
        let budget = Budget::parse("5.00").unwrap();
        assert_eq!((cost - budget.amount()).to_string(), "-1.250000");
        assert!(cost.reached(budget, 75));
        assert!(!cost.reached(budget, 76));
        assert_eq!(cost.percent_of(budget), 75.0);
        let most = PerMillion::parse("9999999.999999").unwrap().cost(i64::MAX);
        assert!(most > Amount::ZERO, "no overflow");
    }

    #[test]
    fn micro_units_round_up_towards_more_money() {
        let tiny = PerMillion::parse("0.000025").unwrap().cost(1);
        assert_eq!(tiny.micros_rounded_up(), 1);
        assert_eq!(
            Amount::from_micros(4_700_000).micros_rounded_up(),
            4_700_000
        );
        assert_eq!(Amount::from_micros(4_700_000).to_string(), "4.700000");
        assert_eq!((Amount::ZERO - tiny).micros_rounded_up(), 0);
        assert_eq!(Amount::from_micros(-3).micros_rounded_up(), -3);
        assert_eq!(
            PerMillion::parse("9999999.999999")
                .unwrap()
                .cost(i64::MAX)
                .micros_rounded_up(),
            i64::MAX
        );
    }
}
