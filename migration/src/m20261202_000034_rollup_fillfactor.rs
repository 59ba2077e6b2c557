//! Room on every rollup page for the next version of each of its rows, so
//! that counting updates rollup rows in place (HOT: heap-only tuples).
//!
//! A counting statement updates each rollup row of its batch once. A page
//! filled to the brim has no room for the new versions of its rows while
//! the old ones are still live (until the statement commits), so at
//! fillfactor 100 most updates moved their row to another page and added an
//! entry to both rollup indexes, which then needed bottom-up deletion
//! passes: with 200 tenants only 16 % of the updates of a 200,000-event
//! drain were HOT. With half of each page kept free every row's next
//! version fits beside it, the updates are HOT (measured: 91-100 %), the
//! tables and their indexes stay smaller despite the free space (no dead
//! versions piling up in other pages), and a 5,000-event batch over 200
//! tenants costs about a quarter less (BENCHMARKS.md, "Counting that
//! scales"). Rows of past minutes and days, never updated again, take
//! twice the space they would at 100.
//!
//! Only new pages are filled to the new mark: an existing database keeps
//! its pages as they are until it rewrites them (`VACUUM FULL`), and this
//! changes nothing that is stored.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE rollups SET (fillfactor = 50);
ALTER TABLE daily_rollups SET (fillfactor = 50);
"#;

const DOWN: &str = r#"
ALTER TABLE rollups RESET (fillfactor);
ALTER TABLE daily_rollups RESET (fillfactor);
"#;

sql_migration!(UP, DOWN);
