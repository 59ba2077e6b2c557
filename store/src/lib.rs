//! What the api, the pipeline and the alerts read from PostgreSQL beyond a
//! single table, and the dead letters both binaries write and re-drive:
//! a tenant's usage over a period or a time series ([`usage`]), priced as
//! it is read ([`costing`], from the versions in [`prices`]), the ledger
//! read back for the event explorer ([`ledger`]), a tenant's configuration
//! live or as it was deleted ([`tenants`]), which accepted events the
//! ledger already holds ([`inflight`]), and the entries that can never
//! be counted ([`dead_letter`]).

pub mod costing;
pub mod dead_letter;
pub mod inflight;
pub mod ledger;
pub mod prices;
pub mod tenants;
pub mod usage;
