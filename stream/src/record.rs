//! The stream record: one usage event, or the void of one, as MessagePack in
//! the entry's field `e`.
//!
//! The record is a map with named fields and a version `v`, so that a newer
//! writer can add fields without breaking an older reader. Decoding is
//! bounded (size and nesting) and re-applies the domain rules, because anyone
//! with access to Valkey can write into the stream.
//!
//! Versions, each still decoded:
//! - 1: an unclassified event (`tokens` only);
//! - 2: an event with the four optional token classes (`input_tokens`,
//!   `output_tokens`, `cache_read_tokens`, `cache_write_tokens`), absent when
//!   not sent; `tokens` is their sum;
//! - 3: a void, one more field `void`: it names the event it cancels by
//!   `tenant` and `id`, with an empty `feature`, no `tokens` and no classes.
//!
//! An unclassified event is still written as version 1 and a classified one
//! as version 2, so that a pipeline that predates classes or voids keeps
//! counting what it understands during a rolling upgrade (it dead-letters a
//! newer version as unsupported, to be re-driven once it is upgraded).

use domain::validate::TokenClasses;
use serde::{Deserialize, Serialize};

/// The record version of an unclassified event.
pub const VERSION: u8 = 1;
/// The record version of an event with token classes.
pub const CLASSES_VERSION: u8 = 2;
/// The record version of a void.
pub const VOID_VERSION: u8 = 3;
/// The record versions this build reads.
const READABLE: std::ops::RangeInclusive<u8> = VERSION..=VOID_VERSION;
/// Largest payload accepted: a valid record is well under 1 KiB.
pub const MAX_RECORD_BYTES: usize = 4096;
/// Deepest nesting accepted: the record is a flat map.
const MAX_DEPTH: usize = 4;
/// Event and receipt times must fall in 1970–9999 (PostgreSQL's range and
/// then some), so that no record can make the batch insert fail forever.
const TIME_RANGE_MS: std::ops::RangeInclusive<i64> = 0..=253_402_300_799_999;

/// One usage event as it travels through the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Record format version: set by [`EventRecord::new`], checked by
    /// [`EventRecord::decode`], written by nobody else.
    v: u8,
    /// Client event id (idempotency key), unique per tenant.
    pub id: String,
    pub tenant: String,
    pub feature: String,
    pub tokens: i64,
    /// Event time, milliseconds since the Unix epoch.
    pub occurred_ms: i64,
    /// Time the api accepted the event, milliseconds since the Unix epoch.
    pub received_ms: i64,
    /// Whether this cancels the event `(tenant, id)` instead of being one
    /// (version 3 only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub void: bool,
    /// Token classes (version 2); all absent for an unclassified event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<i64>,
}

/// Why a payload is not a usable record.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {0} bytes exceeds {MAX_RECORD_BYTES}")]
    TooLarge(usize),
    #[error("not a MessagePack event record: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    #[error("unsupported record version {0}")]
    Version(u8),
    #[error("invalid record: {0}")]
    Invalid(#[from] domain::validate::Invalid),
}

impl EventRecord {
    /// A record of this build's version. The caller has applied the domain
    /// rules (the api on receipt); [`EventRecord::decode`] re-applies them.
    pub fn new(
        id: String,
        tenant: String,
        feature: String,
        tokens: i64,
        occurred_ms: i64,
        received_ms: i64,
    ) -> Self {
        Self {
            v: VERSION,
            id,
            tenant,
            feature,
            tokens,
            occurred_ms,
            received_ms,
            void: false,
            input_tokens: None,
            output_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
        }
    }

    /// The void of event `(tenant, id)`, received at `received_ms`. The
    /// caller has applied the rules to `tenant` and `id`.
    pub fn void(id: String, tenant: String, received_ms: i64) -> Self {
        Self {
            v: VOID_VERSION,
            id,
            tenant,
            feature: String::new(),
            tokens: 0,
            occurred_ms: received_ms,
            received_ms,
            void: true,
            input_tokens: None,
            output_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
        }
    }

    /// The same event with its token classes: version 2 when any class is
    /// given, so an unclassified event stays readable by a version-1 reader.
    pub fn with_classes(self, classes: TokenClasses) -> Self {
        Self {
            v: if classes.sum().is_some() {
                CLASSES_VERSION
            } else {
                self.v
            },
            input_tokens: classes.input,
            output_tokens: classes.output,
            cache_read_tokens: classes.cache_read,
            cache_write_tokens: classes.cache_write,
            ..self
        }
    }

    /// The event's token classes (none for an unclassified event).
    pub fn classes(&self) -> TokenClasses {
        TokenClasses {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_read: self.cache_read_tokens,
            cache_write: self.cache_write_tokens,
        }
    }

    /// Serialises the record for the stream.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers into a Vec cannot fail.
        rmp_serde::to_vec_named(self).expect("an EventRecord always serialises")
    }

    /// Parses and checks a stream payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        de.set_max_depth(MAX_DEPTH);
        let record = Self::deserialize(&mut de)?;
        if !READABLE.contains(&record.v) {
            return Err(DecodeError::Version(record.v));
        }
        record.check()?;
        Ok(record)
    }

    /// The domain rules every counted event obeys. The 35-day window is not
    /// re-checked (the api checked it on receipt, and a backlog may be old),
    /// only that the times are representable.
    fn check(&self) -> Result<(), domain::validate::Invalid> {
        use domain::validate::{self, Invalid};
        validate::tenant(&self.tenant)?;
        validate::event_id(&self.id)?;
        if self.void != (self.v == VOID_VERSION) {
            return Err(Invalid::new(
                "void",
                "is a version 3 record's, and only its",
            ));
        }
        if self.void {
            if !self.feature.is_empty() || self.tokens != 0 || self.classes().sum().is_some() {
                return Err(Invalid::new(
                    "void",
                    "carries no feature, no tokens and no classes",
                ));
            }
        } else {
            validate::feature(&self.feature)?;
            // Also checks `tokens` (1 to the maximum) and that it is the sum
            // of the classes, if there are any.
            validate::event_tokens(Some(self.tokens), &self.classes())?;
        }
        for (field, ms) in [
            ("occurred_ms", self.occurred_ms),
            ("received_ms", self.received_ms),
        ] {
            if !TIME_RANGE_MS.contains(&ms) {
                return Err(Invalid {
                    field,
                    reason: "must be a time between 1970 and 9999".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventRecord {
        EventRecord::new(
            "evt-1".into(),
            "acme-corp".into(),
            "anthropic/claude-3.5-sonnet".into(),
            1500,
            1_763_800_000_000,
            1_763_800_000_123,
        )
    }

    fn round_trip(record: &EventRecord) -> Result<EventRecord, DecodeError> {
        EventRecord::decode(&record.encode())
    }

    /// Each record encodes, and its bytes are refused as breaking a rule.
    #[track_caller]
    fn assert_invalid(records: impl IntoIterator<Item = EventRecord>) {
        for record in records {
            let decoded = round_trip(&record);
            assert!(
                matches!(decoded, Err(DecodeError::Invalid(_))),
                "{record:?}"
            );
        }
    }

    #[test]
    fn a_record_survives_the_round_trip() {
        let record = sample();
        assert_eq!(round_trip(&record).unwrap(), record);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for bytes in [
            &b""[..],
            b"\xc1",
            b"hello world",
            b"\x92\x01",
            &[0xdc, 0xff, 0xff],
        ] {
            assert!(matches!(
                EventRecord::decode(bytes),
                Err(DecodeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_it_costs_stack() {
        let bytes = vec![0x91; 100_000];
        assert!(matches!(
            EventRecord::decode(&bytes[..MAX_RECORD_BYTES]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            EventRecord::decode(&bytes),
            Err(DecodeError::TooLarge(100_000))
        ));
    }

    fn classified() -> EventRecord {
        EventRecord::new(
            "evt-2".into(),
            "acme-corp".into(),
            "gpt-4o".into(),
            1_300,
            1_763_800_000_000,
            1_763_800_000_123,
        )
        .with_classes(TokenClasses {
            input: Some(1_000),
            output: Some(100),
            cache_read: Some(200),
            cache_write: None,
        })
    }

    #[test]
    fn token_classes_survive_the_round_trip() {
        let record = classified();
        let decoded = round_trip(&record).unwrap();
        assert_eq!(decoded.classes(), record.classes());
        assert_eq!(decoded.v, 2);
    }

    #[test]
    fn a_version_1_record_decodes_as_an_unclassified_event() {
        /// The record as version 1 wrote it: no class fields at all.
        #[derive(Serialize)]
        struct V1<'a> {
            v: u8,
            id: &'a str,
            tenant: &'a str,
            feature: &'a str,
            tokens: i64,
            occurred_ms: i64,
            received_ms: i64,
        }
        let bytes = rmp_serde::to_vec_named(&V1 {
            v: 1,
            id: "evt-1",
            tenant: "acme-corp",
            feature: "anthropic/claude-3.5-sonnet",
            tokens: 1500,
            occurred_ms: 1_763_800_000_000,
            received_ms: 1_763_800_000_123,
        })
        .unwrap();
        let decoded = EventRecord::decode(&bytes).unwrap();
        assert_eq!(decoded, EventRecord { v: 1, ..sample() });
        assert_eq!(decoded.classes(), TokenClasses::default());
    }

    #[test]
    fn classes_that_do_not_sum_to_the_tokens_are_refused() {
        assert_invalid([
            EventRecord {
                tokens: 1_301,
                ..classified()
            },
            EventRecord {
                cache_write_tokens: Some(-1),
                tokens: 1_299,
                ..classified()
            },
        ]);
    }

    #[test]
    fn every_version_written_so_far_decodes_and_a_void_carries_no_classes() {
        // An unclassified event stays version 1, even through with_classes.
        let plain = sample().with_classes(TokenClasses::default());
        assert_eq!(plain.v, VERSION);
        // Issue 15's first writers sent version 2 for every event.
        let v2_plain = EventRecord {
            v: CLASSES_VERSION,
            ..sample()
        };
        assert_eq!(round_trip(&v2_plain).unwrap(), v2_plain);
        let void = EventRecord::void("evt-1".into(), "acme-corp".into(), 1_763_800_000_123);
        assert_invalid([EventRecord {
            input_tokens: Some(5),
            ..void
        }]);
    }

    #[test]
    fn a_void_survives_the_round_trip_and_an_event_stays_version_1() {
        let void = EventRecord::void("evt-1".into(), "acme-corp".into(), 1_763_800_000_123);
        assert_eq!(round_trip(&void).unwrap(), void);
        assert!(void.void);
        let event = sample();
        assert_eq!(event.v, 1);
        // An event's bytes are those of a version 1 writer: no `void` key.
        assert!(!event.encode().windows(4).any(|w| w == b"void"));
        assert_invalid([
            EventRecord {
                void: true,
                ..sample()
            },
            EventRecord {
                tokens: 5,
                ..void.clone()
            },
            EventRecord { v: VERSION, ..void },
        ]);
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let record = EventRecord { v: 9, ..sample() };
        assert!(matches!(round_trip(&record), Err(DecodeError::Version(9))));
    }

    #[test]
    fn a_well_formed_record_breaking_a_rule_is_refused() {
        assert_invalid([
            EventRecord {
                tokens: 0,
                ..sample()
            },
            EventRecord {
                occurred_ms: i64::MAX,
                ..sample()
            },
            EventRecord {
                tenant: "bad tenant".into(),
                ..sample()
            },
        ]);
    }
}

/// Property tests: the decoder faces whatever anyone with Valkey access
/// writes into the stream, so arbitrary and mutated payloads must be refused
/// with an error (never a panic, never a huge allocation), and every valid
/// record must survive the round trip.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn valid_record() -> impl Strategy<Value = EventRecord> {
        (
            "[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
            "[!-~]{1,128}",
            "[!-~]{1,128}",
            1..=1_000_000_000i64,
            TIME_RANGE_MS,
            TIME_RANGE_MS,
        )
            .prop_map(|(tenant, feature, id, tokens, occurred_ms, received_ms)| {
                EventRecord::new(id, tenant, feature, tokens, occurred_ms, received_ms)
            })
    }

    /// What can be done to a valid payload's bytes.
    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Insert(usize, u8),
        Remove(usize),
        Truncate(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
            any::<usize>().prop_map(Mutation::Remove),
            any::<usize>().prop_map(Mutation::Truncate),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::Flip(at, bits) => {
                if let Some(byte) = bytes.get_mut(at % len) {
                    *byte ^= bits;
                }
            }
            Mutation::Insert(at, byte) => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Remove(at) => {
                if !bytes.is_empty() {
                    bytes.remove(at % len);
                }
            }
            Mutation::Truncate(at) => bytes.truncate(at % len),
        }
    }

    /// A decoded payload is a record that obeys every rule.
    fn sound(result: Result<EventRecord, DecodeError>) {
        if let Ok(record) = result {
            assert!(READABLE.contains(&record.v));
            assert!(record.check().is_ok(), "{record:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn every_valid_record_survives_the_round_trip(record in valid_record()) {
            prop_assert_eq!(EventRecord::decode(&record.encode()).unwrap(), record);
        }

        #[test]
        fn arbitrary_bytes_are_refused_or_sound(bytes in proptest::collection::vec(any::<u8>(), 0..5_000)) {
            sound(EventRecord::decode(&bytes));
        }

        #[test]
        fn mutated_records_are_refused_or_sound(
            record in valid_record(),
            mutations in proptest::collection::vec(mutation(), 1..8),
        ) {
            let mut bytes = record.encode();
            for mutation in &mutations {
                apply(&mut bytes, mutation);
            }
            sound(EventRecord::decode(&bytes));
        }
    }

    #[test]
    fn huge_declared_lengths_are_refused_without_allocating_them() {
        // A map, a string, an array and a binary each claiming 4 Gi entries
        // or bytes, followed by almost nothing.
        for header in [
            &[0xdf, 0xff, 0xff, 0xff, 0xff][..],
            &[0x81, 0xa2, b'i', b'd', 0xdb, 0xff, 0xff, 0xff, 0xff, b'x'],
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0x81, 0xa2, b'i', b'd', 0xc6, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(EventRecord::decode(header).is_err());
        }
    }
}
