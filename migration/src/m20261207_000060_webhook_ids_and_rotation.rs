//! Signed webhooks that survive a second database and a secret rotation
//! (issue 32).
//!
//! `webhook-id` was `alert_<row number>`: unique within one database only,
//! so a receiver fed by staging and production (or by a rebuilt stack)
//! would drop real alerts as repeats. Each alert now gets a message id when
//! it is recorded, a UUIDv7 (`flagmeter_uuidv7`, since PostgreSQL before
//! 18 has no `uuidv7()`), kept on the row so that every retry carries the
//! same one; rows recorded earlier get one made from their `created_at`.
//!
//! A rotated secret is kept for a grace period in
//! `tenant_webhook_retired_secrets`, and deliveries are signed with it as
//! well as with the new one (`v1,<new> v1,<old>`): a receiver that has not
//! switched yet still verifies them, so no alert is refused on the way. The
//! secrets are kept as issued, as the current one is: the sender signs
//! with them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
-- A UUIDv7 for `at`: its milliseconds since 1970 in the first 48 bits,
-- then version 7 and random bits (a v4's random bits, its version 4 turned
-- into 7 by setting two bits).
CREATE FUNCTION flagmeter_uuidv7(at timestamptz DEFAULT clock_timestamp()) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

ALTER TABLE alerts ADD COLUMN message_id uuid;
UPDATE alerts SET message_id = flagmeter_uuidv7(created_at);
ALTER TABLE alerts
    ALTER COLUMN message_id SET DEFAULT flagmeter_uuidv7(),
    ALTER COLUMN message_id SET NOT NULL,
    ADD CONSTRAINT alerts_message_id_key UNIQUE (message_id);

CREATE TABLE tenant_webhook_retired_secrets (
    tenant     text COLLATE "C" NOT NULL REFERENCES tenant_webhooks (tenant) ON DELETE CASCADE,
    secret     text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    retired_at timestamptz NOT NULL DEFAULT now(),
    -- Deliveries are signed with it until then.
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, secret)
);
"#;

const DOWN: &str = r#"
DROP TABLE tenant_webhook_retired_secrets;
ALTER TABLE alerts DROP COLUMN message_id;
DROP FUNCTION flagmeter_uuidv7(timestamptz);
"#;

sql_migration!(UP, DOWN);
