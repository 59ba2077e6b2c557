//! Step one of a batch: the deliveries' payloads decoded into records. Pure:
//! what cannot be decoded is handed back with its reason, for the worker to
//! dead-letter.

use stream::{EventRecord, FIELD};

use crate::consumer::Delivery;

/// A batch after decoding.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The records that decoded, in stream order ...
    pub records: Vec<EventRecord>,
    /// ... and, index for index, the entries they came from.
    pub sources: Vec<Delivery>,
    /// Entries that are not records, with the reason.
    pub refused: Vec<(Delivery, String)>,
    /// Every entry id of the batch, decoded or not: all are acked together.
    pub ids: Vec<String>,
}

/// Decodes every delivery of a batch.
pub fn decode(deliveries: Vec<Delivery>) -> Decoded {
    let mut decoded = Decoded {
        records: Vec::with_capacity(deliveries.len()),
        sources: Vec::with_capacity(deliveries.len()),
        ids: Vec::with_capacity(deliveries.len()),
        refused: Vec::new(),
    };
    for delivery in deliveries {
        let record = match &delivery.payload {
            Some(bytes) => EventRecord::decode(bytes).map_err(|err| err.to_string()),
            None => Err(format!("entry has no field '{FIELD}'")),
        };
        decoded.ids.push(delivery.id.clone());
        match record {
            Ok(record) => {
                decoded.records.push(record);
                decoded.sources.push(delivery);
            }
            Err(reason) => decoded.refused.push((delivery, reason)),
        }
    }
    decoded
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
        let decoded = decode(vec![
            delivery("1-0", Some(b"junk".to_vec())),
            delivery("2-0", Some(record.encode())),
            delivery("3-0", None),
        ]);
        assert_eq!(decoded.records, vec![record]);
        assert_eq!(decoded.sources[0].id, "2-0");
        assert_eq!(decoded.ids, ["1-0", "2-0", "3-0"]);
        let refused: Vec<&str> = decoded.refused.iter().map(|(d, _)| d.id.as_str()).collect();
        assert_eq!(refused, ["1-0", "3-0"]);
        assert!(decoded.refused[1].1.contains("no field 'e'"));
    }
}
