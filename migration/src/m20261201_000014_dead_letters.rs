//! Dead letters: stream entries that can never be counted, kept in
//! PostgreSQL rather than in Valkey, so that setting one aside needs no free
//! Valkey memory (a Valkey at `maxmemory` refuses every write that adds, and
//! a dead letter that cannot be written would hold its batch, and with it
//! the stream's trimming, forever). One letter per stream entry: writing it
//! again after a crash changes nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE dead_letters (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The stream and entry the letter came from.
    stream      text        NOT NULL,
    entry_id    text        NOT NULL,
    -- undecodable, refused (by PostgreSQL), redelivered (too often), or
    -- imported (from a Valkey dead-letter stream of an earlier version).
    kind        text        NOT NULL CHECK (kind <> ''),
    reason      text        NOT NULL,
    deliveries  integer     NOT NULL CHECK (deliveries > 0),
    consumer    text        NOT NULL,
    -- The entry's original bytes (field `e`), when it had them.
    payload     bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, entry_id)
);
"#;

sql_migration!(UP, "DROP TABLE dead_letters");
