//! `GET /api/health` (the process answers) and `GET /api/ready` (it can do
//! its work: PostgreSQL and Valkey both answer).

use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use sea_orm::ConnectionTrait;

use super::ApiTags;
use crate::state::AppState;

/// Probe result.
#[derive(Debug, Object)]
pub struct Health {
    /// `ok`, or `unavailable`.
    pub status: String,
    /// Whether PostgreSQL answered (readiness only).
    #[oai(skip_serializing_if_is_none)]
    pub database: Option<bool>,
    /// Whether Valkey answered (readiness only).
    #[oai(skip_serializing_if_is_none)]
    pub valkey: Option<bool>,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// PostgreSQL and Valkey both answer.
    #[oai(status = 200)]
    Ready(Json<Health>),
    /// PostgreSQL or Valkey does not answer.
    #[oai(status = 503)]
    NotReady(Json<Health>),
}

/// The routes below, over the shared state.
pub struct HealthApi(pub AppState);

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process is up.
    #[oai(path = "/api/health", method = "get", operation_id = "getHealth")]
    async fn health(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
            database: None,
            valkey: None,
        })
    }

    /// Readiness: PostgreSQL and Valkey are reachable.
    #[oai(path = "/api/ready", method = "get", operation_id = "getReady")]
    async fn ready(&self) -> ReadyResponse {
        let timeout = std::time::Duration::from_secs(2);
        let database = tokio::time::timeout(timeout, self.0.db.execute_unprepared("SELECT 1"))
            .await
            .is_ok_and(|r| r.is_ok());
        let mut conn = self.0.valkey.clone();
        let valkey =
            tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut conn))
                .await
                .is_ok_and(|r| r.is_ok());
        let ok = database && valkey;
        let health = Health {
            status: if ok { "ok" } else { "unavailable" }.into(),
            database: Some(database),
            valkey: Some(valkey),
        };
        if ok {
            ReadyResponse::Ready(Json(health))
        } else {
            ReadyResponse::NotReady(Json(health))
        }
    }
}
