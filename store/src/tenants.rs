//! A tenant's configuration for reading its history: the live row, or, once
//! the tenant is deleted, the row it had then (`deleted_tenants`). Deleting
//! a tenant stops its alerts and webhooks, but billing history must not be
//! lost with it: its usage and alerts are still read in the periods, time
//! zone and quota they were billed under.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, Statement};

use entity::tenants;

/// Moves a tenant's row to `deleted_tenants` (replacing the row of an
/// earlier deletion) and deletes it, with its webhooks. `false` if there was
/// no such tenant. Run it in a transaction: both happen or neither.
pub async fn delete<C: ConnectionTrait>(db: &C, id: &str) -> Result<bool, DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        r#"INSERT INTO deleted_tenants (id, config)
           SELECT t.id, to_jsonb(t) FROM tenants t WHERE t.id = $1
           ON CONFLICT (id) DO UPDATE SET config = excluded.config, deleted_at = now()"#,
        [id.into()],
    ))
    .await?;
    let deleted = tenants::Entity::delete_by_id(id).exec(db).await?;
    Ok(deleted.rows_affected > 0)
}

/// The tenant's live configuration, else the one it had when it was
/// deleted; `None` for a tenant never configured nor seen. Columns added to
/// `tenants` after the deletion read as NULL (their "none").
pub async fn configuration<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> Result<Option<tenants::Model>, DbErr> {
    if let Some(live) = tenants::Entity::find_by_id(id).one(db).await? {
        return Ok(Some(live));
    }
    tenants::Model::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT (jsonb_populate_record(NULL::tenants, config)).* FROM deleted_tenants WHERE id = $1",
        [id.into()],
    ))
    .one(db)
    .await
}
