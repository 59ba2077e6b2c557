//! Deleting a tenant keeps its billing history readable (issue 31): the
//! configuration it had when deleted (its `tenants` row as JSON, so columns
//! added later need no change here), from which its usage, time series and
//! alert history are still read: the period, time zone and quota they were
//! billed under. A tenant created again (by `PUT` or by an event) is read
//! from `tenants` as before; this row is then only its past.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE deleted_tenants (
    id         text COLLATE "C" PRIMARY KEY,
    config     jsonb       NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
"#;

sql_migration!(UP, "DROP TABLE deleted_tenants");
