//! Stream entry ids (`ms-seq`) as values: parsed once, ordered numerically
//! (as strings, "9-0" would sort after "10-0").

use std::{fmt, str::FromStr};

/// A stream entry id: milliseconds and a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    /// The id right after this one: the first that is not it or older.
    pub fn next(self) -> Self {
        Self {
            ms: self.ms,
            seq: self.seq + 1,
        }
    }
}

/// A string that is not `ms-seq`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream entry id: {0:?}")]
pub struct NotAnEntryId(pub String);

impl FromStr for EntryId {
    type Err = NotAnEntryId;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let parsed = id
            .split_once('-')
            .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)));
        match parsed {
            Some((ms, seq)) => Ok(Self { ms, seq }),
            None => Err(NotAnEntryId(id.to_owned())),
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_by_number_not_by_text() {
        let a: EntryId = "9-0".parse().unwrap();
        let b: EntryId = "10-0".parse().unwrap();
        assert!(a < b);
        assert!(b < "10-1".parse().unwrap());
        assert_eq!(a.next().to_string(), "9-1");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for id in ["", "1", "a-b", "1-", "-1", "1-2-3"] {
            assert!(id.parse::<EntryId>().is_err(), "{id}");
        }
    }
}
