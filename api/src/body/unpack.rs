//! MessagePack bodies decoded within bounds, like the stream's records:
//! nesting at most [`MAX_DEPTH`] (a batch is three levels deep), and the
//! size by the body limit that already wraps every body. Trailing bytes
//! after the first value are refused.

use std::io::Cursor;

use serde::de::DeserializeOwned;

/// Deepest nesting a body may have.
pub const MAX_DEPTH: usize = 8;

/// A MessagePack deserializer of `bytes`, within [`MAX_DEPTH`].
pub fn deserializer(
    bytes: &[u8],
) -> rmp_serde::Deserializer<rmp_serde::decode::ReadReader<Cursor<&[u8]>>> {
    let mut de = rmp_serde::Deserializer::new(Cursor::new(bytes));
    de.set_max_depth(MAX_DEPTH);
    de
}

/// Whether `de` has read all of `bytes`: one value, nothing after it.
pub fn all_read(
    de: &rmp_serde::Deserializer<rmp_serde::decode::ReadReader<Cursor<&[u8]>>>,
    bytes: &[u8],
) -> Result<(), String> {
    let left = bytes.len() as u64 - de.position();
    match left {
        0 => Ok(()),
        left => Err(format!("{left} bytes after the first value")),
    }
}

/// Decodes one MessagePack value (and nothing after it) into `T`, within
/// [`MAX_DEPTH`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = deserializer(bytes);
    let value = T::deserialize(&mut de).map_err(|err| format!("invalid MessagePack: {err}"))?;
    all_read(&de, bytes).map_err(|err| format!("invalid MessagePack: {err}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_map_decodes_as_its_json_twin() {
        let value = json!({"tenant": "acme", "tokens": 5, "events": [{"id": "a"}]});
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(decode::<Value>(&bytes).unwrap(), value);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let err = decode::<Value>(&[0x01, 0x02]).unwrap_err();
        assert_eq!(err, "invalid MessagePack: 1 bytes after the first value");
        // Truncated: a map announcing one pair, then nothing.
        assert!(decode::<Value>(&[0x81]).is_err());
        assert!(decode::<Value>(&[]).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        // 20 nested one-element arrays around a 0.
        let mut deep = vec![0x91; 20];
        deep.push(0x00);
        assert!(decode::<Value>(&deep).is_err());
        let mut shallow = vec![0x91; 3];
        shallow.push(0x00);
        assert_eq!(decode::<Value>(&shallow).unwrap(), json!([[[0]]]));
    }
}
