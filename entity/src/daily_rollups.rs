//! `daily_rollups`: tokens per tenant, feature and UTC day of event time.
//!
//! Billing periods start at 00:00 UTC, so a period's total is a sum of at most
//! 31 rows per feature instead of up to 44,640 minute rows.

use sea_orm::entity::prelude::*;

rollup_table!("daily_rollups", day: Date);
