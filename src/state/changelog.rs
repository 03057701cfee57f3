//! What travels with changelog records: the input positions of the batch that wrote them,
//! and the rule restore uses to decide whether a record belongs to committed work.

use std::collections::HashMap;

/// Header on every changelog record: the batch's input positions (`(topic, partition,
/// next offset)`), bincode-encoded.
pub const POSITIONS_HEADER: &str = "scorestream.positions";

/// A batch's input positions.
pub type Positions = Vec<(String, i32, i64)>;

pub fn encode_positions<'a>(positions: impl IntoIterator<Item = (&'a str, i32, i64)>) -> Vec<u8> {
    let list: Vec<(&str, i32, i64)> = positions.into_iter().collect();
    bincode::serde::encode_to_vec(&list, bincode::config::standard()).unwrap_or_default()
}

pub fn decode_positions(bytes: &[u8]) -> Option<Positions> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .ok()
        .map(|(p, _)| p)
}

/// True when every input position of the batch is at or below what the consumer group has
/// committed: the batch's inputs will not be processed again, so its state must be kept.
/// A partition with no committed offset counts as nothing committed.
pub fn is_committed(
    positions: &[(String, i32, i64)],
    committed: &HashMap<(String, i32), i64>,
) -> bool {
    positions.iter().all(|(topic, partition, next)| {
        committed
            .get(&(topic.clone(), *partition))
            .is_some_and(|c| next <= c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_only_when_every_position_is() {
        let p = decode_positions(&encode_positions([("in", 0, 10), ("in2", 0, 5)])).unwrap();
        let mut c = HashMap::new();
        c.insert(("in".to_string(), 0), 10);
        assert!(!is_committed(&p, &c), "in2 has no committed offset");
        c.insert(("in2".to_string(), 0), 4);
        assert!(!is_committed(&p, &c), "in2 committed below the batch");
        c.insert(("in2".to_string(), 0), 5);
        assert!(is_committed(&p, &c));
        assert!(decode_positions(b"\xff\xff\xff").is_none());
    }
}
