//! Voids (issue 17): an event can be cancelled after it was counted, and a
//! void that comes first leaves a tombstone that the event never gets past.
//!
//! Both live in the ledger itself, under its `(tenant, id)` key, so that
//! the key that makes counting exactly-once also orders an event and its
//! void, whatever their order and however many replicas commit at once: a
//! void of a counted event sets `voided_at` (and the writer subtracts the
//! event from the rollups in the same statement); a void of an id never
//! seen inserts a tombstone (`tokens` 0, empty `feature`, `voided_at` set),
//! on which the event's later insert conflicts and counts nothing. A void
//! of a voided id changes nothing. Tombstones age out with the ledger's
//! retention, like the events whose retries the ledger deduplicates.
//!
//! The token check now allows a tombstone's 0. It is re-added `NOT VALID`:
//! it holds for every new row at once, without a scan of the ledger under
//! an exclusive lock (every existing row has tokens > 0 anyway).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE events ADD COLUMN voided_at timestamptz;
ALTER TABLE events DROP CONSTRAINT events_tokens_check,
    ADD CONSTRAINT events_tokens_check CHECK (tokens > 0 OR voided_at IS NOT NULL) NOT VALID;
"#;

const DOWN: &str = r#"
DELETE FROM events WHERE tokens = 0;
ALTER TABLE events DROP CONSTRAINT events_tokens_check,
    ADD CONSTRAINT events_tokens_check CHECK (tokens > 0);
ALTER TABLE events DROP COLUMN voided_at;
"#;

sql_migration!(UP, DOWN);
