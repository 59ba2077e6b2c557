//! Billing periods in the tenant's time zone (issue 17): the `timezone`
//! column (an IANA name, checked by the api), and the one function that sums
//! usage (tokens and events per feature) over any half-open span of time, however it falls across UTC days.
//!
//! Rollups are kept per UTC day and per minute. `period_feature_totals`
//! reads the whole UTC days inside the span from the daily rollups and the
//! partial days at either end from the minute rollups, so that a period
//! from local midnight to local midnight (New York: 04:00Z or 05:00Z;
//! Kolkata: 18:30Z) is exact, at a cost of at most two days of minute rows
//! per feature. A span on UTC midnights (every UTC tenant's) reads daily
//! rollups only, as before. Being a plain SQL function, PostgreSQL inlines
//! it into the calling query.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE tenants ADD COLUMN timezone text NOT NULL DEFAULT 'UTC';

CREATE FUNCTION period_feature_totals(p_tenant text, p_start timestamptz, p_end timestamptz)
RETURNS TABLE (feature text, tokens bigint, events bigint, updated_at timestamptz)
LANGUAGE sql STABLE AS $$
    WITH bounds AS (
        -- The whole UTC days inside [p_start, p_end): [full_from, full_to).
        SELECT CASE WHEN p_start = date_trunc('day', p_start, 'UTC') THEN p_start
                    ELSE date_trunc('day', p_start, 'UTC') + interval '1 day' END AS full_from,
               date_trunc('day', p_end, 'UTC') AS full_to
    ),
    parts AS (
        SELECT d.feature, d.total_tokens, d.event_count, d.updated_at
        FROM daily_rollups d, bounds b
        WHERE d.tenant = p_tenant
          AND d.day >= (b.full_from AT TIME ZONE 'UTC')::date
          AND d.day < (b.full_to AT TIME ZONE 'UTC')::date
        UNION ALL
        SELECT r.feature, r.total_tokens, r.event_count, r.updated_at
        FROM rollups r, bounds b
        WHERE r.tenant = p_tenant
          AND ((r.minute >= p_start AND r.minute < least(b.full_from, p_end))
               OR (r.minute >= greatest(b.full_to, b.full_from, p_start) AND r.minute < p_end))
    )
    SELECT feature, sum(total_tokens)::bigint, sum(event_count)::bigint, max(updated_at)
    FROM parts GROUP BY feature
$$;
"#;

const DOWN: &str = r#"
DROP FUNCTION period_feature_totals(text, timestamptz, timestamptz);
ALTER TABLE tenants DROP COLUMN timezone;
"#;

sql_migration!(UP, DOWN);
