//! Key and value encodings. Keys use bincode with big-endian fixed-width integers so that
//! byte order equals the order of unsigned integers and the encoding of a tuple's leading
//! fields is a prefix of the whole key (prefix scans). Strings are length-prefixed, so keys
//! of equal-length strings sort by content; signed integers sort negatives after positives —
//! use unsigned components where order matters. Values use bincode's compact standard form.

use bincode::config::{BigEndian, Configuration, Fixint, LittleEndian, Varint};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StateError;

const KEYS: Configuration<BigEndian, Fixint> = bincode::config::standard()
    .with_big_endian()
    .with_fixed_int_encoding();
const VALUES: Configuration<LittleEndian, Varint> = bincode::config::standard();

pub fn encode_key<K: Serialize + ?Sized>(store: &str, key: &K) -> Result<Vec<u8>, StateError> {
    bincode::serde::encode_to_vec(key, KEYS).map_err(|e| StateError::Encode {
        store: store.to_string(),
        what: "key",
        message: e.to_string(),
    })
}

pub fn decode_key<K: DeserializeOwned>(store: &str, bytes: &[u8]) -> Result<K, StateError> {
    bincode::serde::decode_from_slice(bytes, KEYS)
        .map(|(k, _)| k)
        .map_err(|e| StateError::Decode {
            store: store.to_string(),
            what: "key",
            message: e.to_string(),
        })
}

pub fn encode_value<V: Serialize + ?Sized>(store: &str, value: &V) -> Result<Vec<u8>, StateError> {
    bincode::serde::encode_to_vec(value, VALUES).map_err(|e| StateError::Encode {
        store: store.to_string(),
        what: "value",
        message: e.to_string(),
    })
}

pub fn decode_value<V: DeserializeOwned>(store: &str, bytes: &[u8]) -> Result<V, StateError> {
    bincode::serde::decode_from_slice(bytes, VALUES)
        .map(|(v, _)| v)
        .map_err(|e| StateError::Decode {
            store: store.to_string(),
            what: "value",
            message: e.to_string(),
        })
}

/// The smallest byte string greater than every string starting with `prefix`, or `None`
/// when there is none (the prefix is all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_follows_unsigned_integers_and_prefixes() {
        let a = encode_key("s", &("board", 2u64)).unwrap();
        let b = encode_key("s", &("board", 10u64)).unwrap();
        let p = encode_key("s", &"board").unwrap();
        assert!(a < b);
        assert!(a.starts_with(&p) && b.starts_with(&p));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
