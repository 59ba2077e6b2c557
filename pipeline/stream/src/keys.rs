//! Key names: the stream, the consumer group, the dead-letter stream an
//! earlier version wrote (dead letters now live in PostgreSQL), and
//! the entry field that holds a record.

/// The entry field that holds the MessagePack record.
pub const FIELD: &str = "e";

/// Names of the stream, its legacy dead-letter stream and the consumer
/// group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeys {
    pub stream: String,
    /// Where an earlier version kept dead letters; read once, to move them
    /// into PostgreSQL.
    pub dead: String,
    pub group: String,
}

impl StreamKeys {
    pub fn new(stream: &str, group: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            dead: format!("{stream}:dead"),
            group: group.to_owned(),
        }
    }
}
