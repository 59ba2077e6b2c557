//! Step one of a batch: the deliveries' payloads decoded into records, as
//! one value ([`Batch`]) that the later steps take whole. Pure: what cannot
//! be decoded is kept with its reason, for the worker to dead-letter.

use std::time::Instant;

use stream::{EventRecord, FIELD};

use crate::consumer::Delivery;

/// One batch as read, decoded: every entry is either a record to count or
/// a refusal to set aside, and all of them are acknowledged together.
#[derive(Debug)]
pub struct Batch {
    /// Every entry id, in stream order.
    ids: Vec<String>,
    /// The records that decoded, in stream order (one slice, as PostgreSQL
    /// takes them) ...
    records: Vec<EventRecord>,
    /// ... and, index for index, the entries they came from.
    sources: Vec<Delivery>,
    refused: Vec<Refused>,
    /// When the batch was read, for the batch duration and for keeping a
    /// slow batch's entries from being taken over.
    read_at: Instant,
}

/// An entry that is not a record.
#[derive(Debug)]
pub struct Refused {
    pub delivery: Delivery,
    pub reason: String,
}

impl Batch {
    /// Decodes every delivery of a batch read just now.
    pub fn decode(deliveries: Vec<Delivery>) -> Self {
        let mut batch = Self {
            ids: Vec::with_capacity(deliveries.len()),
            records: Vec::with_capacity(deliveries.len()),
            sources: Vec::with_capacity(deliveries.len()),
            refused: Vec::new(),
            read_at: Instant::now(),
        };
        for delivery in deliveries {
            let record = match &delivery.payload {
                Some(bytes) => EventRecord::decode(bytes).map_err(|err| err.to_string()),
                None => Err(format!("entry has no field '{FIELD}'")),
            };
            batch.ids.push(delivery.id.clone());
            match record {
                Ok(record) => {
                    batch.records.push(record);
                    batch.sources.push(delivery);
                }
                Err(reason) => batch.refused.push(Refused { delivery, reason }),
            }
        }
        batch
    }

    /// Every entry id of the batch, decoded or not.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The records to count.
    pub fn records(&self) -> &[EventRecord] {
        &self.records
    }

    /// The records to count, each with the entry it came from.
    pub fn counted(&self) -> impl Iterator<Item = (&Delivery, &EventRecord)> {
        self.sources.iter().zip(&self.records)
    }

    /// The entries that are not records.
    pub fn refused(&self) -> &[Refused] {
        &self.refused
    }

    pub fn read_at(&self) -> Instant {
        self.read_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, payload: Option<Vec<u8>>) -> Delivery {
        Delivery {
            id: id.to_owned(),
            payload,
        }
    }

    #[test]
    fn records_keep_their_entries_and_the_rest_is_refused_with_a_reason() {
        let record = EventRecord::new(
            "e1".into(),
            "acme".into(),
            "gpt-4o".into(),
            5,
            1_763_800_000_000,
            1_763_800_000_000,
        );
        let batch = Batch::decode(vec![
            delivery("1-0", Some(b"junk".to_vec())),
            delivery("2-0", Some(record.encode())),
            delivery("3-0", None),
        ]);
        assert_eq!(batch.records(), std::slice::from_ref(&record));
        let counted: Vec<(&str, &EventRecord)> =
            batch.counted().map(|(d, r)| (d.id.as_str(), r)).collect();
        assert_eq!(counted, [("2-0", &record)]);
        assert_eq!(batch.ids(), ["1-0", "2-0", "3-0"]);
        let refused: Vec<&str> = batch
            .refused()
            .iter()
            .map(|r| r.delivery.id.as_str())
            .collect();
        assert_eq!(refused, ["1-0", "3-0"]);
        assert!(batch.refused()[1].reason.contains("no field 'e'"));
    }
}
