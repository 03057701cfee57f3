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

/// [`encode_key`] into `buf` (cleared first), reusing its allocation.
pub fn encode_key_into<K: Serialize + ?Sized>(
    store: &str,
    key: &K,
    buf: &mut Vec<u8>,
) -> Result<(), StateError> {
    buf.clear();
    bincode::serde::encode_into_std_write(key, buf, KEYS)
        .map(|_| ())
        .map_err(|e| StateError::Encode {
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

/// [`encode_value`] into `buf` (cleared first), reusing its allocation.
pub fn encode_value_into<V: Serialize + ?Sized>(
    store: &str,
    value: &V,
    buf: &mut Vec<u8>,
) -> Result<(), StateError> {
    buf.clear();
    bincode::serde::encode_into_std_write(value, buf, VALUES)
        .map(|_| ())
        .map_err(|e| StateError::Encode {
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

    #[test]
    fn encoding_into_a_used_buffer_equals_encoding_fresh() {
        let mut buf = b"left over from the last key".to_vec();
        encode_key_into("s", &("board", 2u64), &mut buf).unwrap();
        assert_eq!(buf, encode_key("s", &("board", 2u64)).unwrap());
        encode_value_into("s", &(7u32, "v"), &mut buf).unwrap();
        assert_eq!(buf, encode_value("s", &(7u32, "v")).unwrap());
    }
}
