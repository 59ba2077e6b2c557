//! Where an alert's time goes: each sample split at the moments PostgreSQL
//! recorded (on this machine's clock, as the bench's): the evaluation that
//! recorded the alert (`alerts.created_at`), and the sender's transaction
//! that claimed its delivery (`webhook_deliveries.updated_at`, its
//! `now()`). The api's receipt time is not used: it is on the Valkey
//! server's clock as the api estimates it, a few milliseconds apart.

use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement, Value};

use crate::{postgres, stats::quantile};

/// The stages, in order, as the summary names them.
const STAGES: [&str; 3] = [
    "sent → alert recorded (api, stream, read, commit, evaluation)",
    "recorded → sender's claim (wake-up)",
    "claim → receiver (sign, post)",
];

/// When a crossing event was sent, on both clocks: the wall clock to
/// compare with the database's, the monotonic one with the receiver's.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    wall: DateTime<Utc>,
    at: Instant,
}

impl Sent {
    pub fn now() -> Self {
        Self {
            wall: Utc::now(),
            at: Instant::now(),
        }
    }

    /// Milliseconds since the epoch of a moment on the monotonic clock.
    fn wall_ms(&self, at: Instant) -> f64 {
        self.wall.timestamp_micros() as f64 / 1e3 + at.duration_since(self.at).as_secs_f64() * 1e3
    }
}

/// One alert's latency, whole and by stage, in ms.
#[derive(Debug, Clone)]
pub struct Sample {
    pub total_ms: f64,
    stages_ms: [f64; 3],
}

const MOMENTS: &str = r#"
SELECT a.tenant,
       (extract(epoch FROM a.created_at) * 1000)::float8 AS recorded_ms,
       (extract(epoch FROM d.updated_at) * 1000)::float8 AS claimed_ms
FROM alerts a
JOIN webhook_deliveries d ON d.alert_id = a.id
WHERE a.tenant = ANY ($1)
"#;

/// Splits each `(tenant, sent, arrived)` at the moments the run's database
/// recorded for that tenant's alert.
pub async fn split(
    database_url: &str,
    sent: Vec<(String, Sent, Instant)>,
) -> anyhow::Result<Vec<Sample>> {
    let db = postgres::connect(database_url).await?;
    let tenants: Vec<String> = sent.iter().map(|(tenant, ..)| tenant.clone()).collect();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            MOMENTS,
            [Value::from(tenants)],
        ))
        .await?;
    db.close().await.ok();
    sent.into_iter()
        .map(|(tenant, sent, arrived)| {
            let row = rows
                .iter()
                .find(|row| {
                    row.try_get::<String>("", "tenant")
                        .is_ok_and(|t| t == tenant)
                })
                .with_context(|| format!("no alert and delivery rows for {tenant}"))?;
            let moment = |column| row.try_get::<f64>("", column);
            let moments = [
                sent.wall_ms(sent.at),
                moment("recorded_ms")?,
                moment("claimed_ms")?,
                sent.wall_ms(arrived),
            ];
            Ok(Sample {
                total_ms: arrived.duration_since(sent.at).as_secs_f64() * 1e3,
                stages_ms: std::array::from_fn(|i| moments[i + 1] - moments[i]),
            })
        })
        .collect()
}

/// Each stage's P50 and P99 over the samples.
pub fn summary(samples: &[Sample]) -> String {
    STAGES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values: Vec<f64> = samples.iter().map(|s| s.stages_ms[i]).collect();
            let q = |p| quantile(&values, p).unwrap_or(f64::NAN);
            format!("{name}: P50 {:.1} / P99 {:.1} ms", q(0.5), q(0.99))
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}
