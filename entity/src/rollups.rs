//! `rollups`: tokens and events per tenant, feature and minute of event time.

use sea_orm::entity::prelude::*;

rollup_table!("rollups", minute: DateTimeUtc);
