//! The command line: what to send, where, how hard and for how long, and
//! whether to audit that every accepted event was counted.

use std::{path::PathBuf, time::Duration};

use crate::traffic::Format;
use clap::{Parser, ValueEnum};

use crate::traffic::Reads;

/// Load generator and loss auditor for FlagMeter.
///
/// Sends usage events (and usage reads) to a running api, measures latency
/// in an HDR histogram and, with `--audit`, checks that every event answered
/// 202 shows up in the tenants' usage.
#[derive(Debug, Parser)]
#[command(name = "flagmeter-load", version, about)]
pub struct Cli {
    /// Base URL of the api; nothing else is ever contacted.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Traffic shape: k6's stages of the original, or a constant arrival rate.
    #[arg(long, value_enum, default_value_t = ProfileName::Constant)]
    pub profile: ProfileName,
    /// Requests per second of the `constant` profile.
    #[arg(long, default_value_t = 1000.0, value_parser = positive_rate)]
    pub rate: f64,
    /// Length of the `constant` profile (`10s`, `2m`, `500ms`, `1h`). For the
    /// staged profiles, when given, their whole timeline is compressed or
    /// stretched to this length; when absent they run their own stages.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Connection pool size: the most requests in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Percentage of requests that post events; the rest read a tenant's usage.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub mix: u8,
    /// What the reads ask: a tenant's usage, or its entitlement check.
    #[arg(long, value_enum, default_value_t = Reads::Usage)]
    pub reads: Reads,
    /// Make each post a model call: a reservation of its tokens
    /// (`POST /api/reservations`) first, which its event then settles;
    /// a call's latency is both requests'. Single events only.
    #[arg(long, conflicts_with = "batch")]
    pub reserve: bool,
    /// Events per post: above 1, posts go to `/api/events/batch`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
    /// Encoding of posted events: `json`, or `msgpack` (sent as
    /// `application/msgpack`); answers are JSON either way.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Tenants to spread events over (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "acme-corp,globex-inc,initech-llc", value_parser = tenant_name)]
    pub tenants: Vec<String>,
    /// Features (models) to spread events over (comma separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gpt-4-turbo,gpt-4o,claude-3-opus,claude-3-sonnet",
        value_parser = feature_name
    )]
    pub features: Vec<String>,
    /// Sent as `Authorization: Bearer <key>` with every request.
    #[arg(long, env = "FLAGMETER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Give every event an id, and after the run check that the tokens of
    /// every event answered 202 were counted; exit non-zero if not.
    #[arg(long)]
    pub audit: bool,
    /// Also write the summary (and the audit) to this JSON file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// How long the audit waits for the pipeline to count everything.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

/// The traffic shapes; see `profile.rs` for their stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileName {
    Baseline,
    Spike,
    Stress,
    Soak,
    Breakpoint,
    Constant,
}

impl ProfileName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Spike => "spike",
            Self::Stress => "stress",
            Self::Soak => "soak",
            Self::Breakpoint => "breakpoint",
            Self::Constant => "constant",
        }
    }
}

/// How long the `constant` profile runs when `--duration` is not given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Parses `10s`, `2m`, `1.5s`, `250ms`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` needs a unit: ms, s, m or h"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` must be a positive duration"))
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a positive number of requests per second"
        )),
    }
}

/// The api's tenant rule, checked here so that a typo fails before the run
/// and names are safe to put into a URL path unescaped.
fn tenant_name(text: &str) -> Result<String, String> {
    let valid = text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}`: a tenant is 1–64 of [A-Za-z0-9._-], starting with a letter or digit"
        ))
    }
}

/// The api's feature rule: 1–128 printable ASCII characters without spaces.
fn feature_name(text: &str) -> Result<String, String> {
    if (1..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}`: a feature is 1–128 printable ASCII characters without spaces"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["10", "s", "0s", "-1s", "5d", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_match_the_original_traffic() {
        let cli = Cli::try_parse_from(["flagmeter-load"]).unwrap();
        assert_eq!(cli.url, "http://127.0.0.1:3000");
        assert_eq!(cli.profile, ProfileName::Constant);
        assert_eq!(cli.rate, 1000.0);
        assert_eq!(cli.duration, None);
        assert_eq!(cli.connections, 256);
        assert_eq!(cli.mix, 80);
        assert_eq!(cli.batch, 1);
        assert_eq!(cli.tenants, ["acme-corp", "globex-inc", "initech-llc"]);
        assert_eq!(cli.features.len(), 4);
        assert_eq!(cli.drain_timeout, Duration::from_secs(60));
    }

    #[test]
    fn names_the_api_would_refuse_are_refused_up_front() {
        for args in [
            ["flagmeter-load", "--tenants", "acme corp"],
            ["flagmeter-load", "--tenants", "-acme"],
            ["flagmeter-load", "--features", "gpt 4"],
            ["flagmeter-load", "--mix", "101"],
            ["flagmeter-load", "--batch", "1001"],
            ["flagmeter-load", "--rate", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
