//! What FlagMeter's values mean, apart from where they are stored or how
//! they travel: the rules of every name and count a client sends
//! ([`validate`]), exact money ([`money`]), billing periods in a tenant's
//! time zone ([`period`]), effective-dated prices ([`pricing`]) and the
//! checks of start-up settings ([`setting`]).
//!
//! The api applies these rules to what clients send, and the pipeline again
//! to what it decodes from the stream (anyone with Valkey access can write
//! there), so both apply the very same rules: they live here, once, with no
//! database or network dependency.

pub mod money;
pub mod period;
pub mod pricing;
pub mod setting;
pub mod validate;

/// Quota given to a tenant that is created by its first event.
pub const DEFAULT_MONTHLY_QUOTA: i64 = 1_000_000;
