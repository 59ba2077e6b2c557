//! The stream contract between the api (which appends usage events) and the
//! pipeline (which counts them): the record and its MessagePack codec
//! ([`record`]), the key names and shards ([`keys`]), how Valkey is reached,
//! one node or a cluster ([`connection`]), how entries are appended
//! ([`mod@append`]) and how the stream and its consumer group come to
//! exist ([`group`]), and stream entry ids as values that order correctly
//! ([`entry_id`]). The dead letters of entries that can never be counted
//! are kept in PostgreSQL (the `store` crate).
//!
//! The record format is known here and nowhere else: the api builds records
//! with [`record::EventRecord::new`] and the pipeline decodes them with
//! [`record::EventRecord::decode`]. This crate holds no consumer-group
//! reading: the api depends on it without compiling the worker.

pub mod append;
pub mod config;
pub mod connection;
pub mod entry_id;
pub mod group;
pub mod keys;
pub mod record;

pub use append::{AppendError, Replication, append, append_replicated};
pub use connection::{ConnectOptions, Target, Valkey};
pub use entry_id::EntryId;
pub use group::ensure_group;
pub use keys::{FIELD, Shards, StreamKeys};
pub use record::EventRecord;
