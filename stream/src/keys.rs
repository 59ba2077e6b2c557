//! Key names: the stream's shards, each with its consumer group and the
//! dead-letter stream an earlier version wrote (dead letters now live in
//! PostgreSQL), and the entry field that holds a record.
//!
//! With one shard (the default) the stream is the configured key itself,
//! named as it always was. With N > 1 shard `i` is `{stream}:{<tag>}`: a
//! hash tag of its own, so that a Valkey Cluster places each shard in its
//! own slot, and everything of one shard (the stream, its group, its legacy
//! dead letters) in the same one. Tags are chosen so that the N shards'
//! slots spread evenly over the 16,384 slots (shard `i` in the `i`-th N-th
//! of them), which puts them on different masters of a cluster whose slots
//! are split evenly (as `redis-cli --cluster create` does).

/// The entry field that holds the MessagePack record.
pub const FIELD: &str = "e";

/// Slots of a Valkey Cluster.
const SLOTS: u32 = 16_384;

/// Names of one stream, its legacy dead-letter stream and the consumer
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

/// The shards of the stream: one or more, never none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shards(Vec<StreamKeys>);

impl Shards {
    /// `count` shards of `stream`, each read by `group`. A `count` of 0 is
    /// taken as 1.
    pub fn new(stream: &str, group: &str, count: u16) -> Self {
        if count <= 1 {
            return Self(vec![StreamKeys::new(stream, group)]);
        }
        let count = u32::from(count);
        Self(
            (0..count)
                .map(|i| StreamKeys::new(&format!("{stream}:{{{}}}", tag(i, count)), group))
                .collect(),
        )
    }

    /// Every shard, in order; shard `i` is the `i`-th.
    pub fn all(&self) -> &[StreamKeys] {
        &self.0
    }

    /// Shard `i`, wrapping around.
    pub fn get(&self, i: usize) -> &StreamKeys {
        &self.0[i % self.0.len()]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: there is always at least one shard.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The hash tag of shard `i` of `count`: `i`, else `i-k` for the first `k`
/// whose slot lies in the middle half of the shard's share of the slots.
fn tag(i: u32, count: u32) -> String {
    let (low, high) = (i * SLOTS / count, (i + 1) * SLOTS / count);
    let margin = (high - low) / 4;
    (0..)
        .map(|k| {
            if k == 0 {
                i.to_string()
            } else {
                format!("{i}-{k}")
            }
        })
        .find(|tag| (low + margin..high - margin).contains(&slot(tag)))
        .expect("about one tag in two fits; the search always ends")
}

/// The cluster slot of a key (or hash tag): CRC16 (XMODEM) mod 16,384.
pub fn slot(key: &str) -> u32 {
    u32::from(crc16::State::<crc16::XMODEM>::calculate(key.as_bytes())) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_is_the_configured_key_itself() {
        let shards = Shards::new("flagmeter:events", "rollups", 1);
        assert_eq!(
            shards.all(),
            [StreamKeys::new("flagmeter:events", "rollups")]
        );
        assert_eq!(shards.get(7).stream, "flagmeter:events");
    }

    #[test]
    fn shards_have_hash_tags_spread_over_the_slots() {
        let shards = Shards::new("flagmeter:events", "rollups", 6);
        assert_eq!(shards.all()[0].stream, "flagmeter:events:{0-4}");
        for (i, keys) in shards.all().iter().enumerate() {
            let tag = keys.stream.split_once('{').unwrap().1.trim_end_matches('}');
            assert!(
                tag == i.to_string() || tag.starts_with(&format!("{i}-")),
                "{tag}"
            );
            let third = slot(tag) * 3 / SLOTS;
            assert_eq!(third as usize, i / 2, "{keys:?} lands on master {third}");
            assert_eq!(keys.dead, format!("{}:dead", keys.stream));
            assert_eq!(keys.group, "rollups");
        }
    }

    #[test]
    fn slots_match_valkey() {
        // CLUSTER KEYSLOT 0 / foo on a real cluster.
        assert_eq!(slot("0"), 13907);
        assert_eq!(slot("foo"), 12182);
    }
}
