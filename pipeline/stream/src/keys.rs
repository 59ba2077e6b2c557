//! Key names: the stream, its dead-letter stream and the consumer group, and
//! the entry field that holds a record.

/// The entry field that holds the MessagePack record.
pub const FIELD: &str = "e";

/// Names of the stream, its dead-letter stream and the consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKeys {
    pub stream: String,
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
