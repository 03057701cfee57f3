//! The bundled topology's store entries as JSON, for `scorestream state dump`.

use super::{churn, game, leaderboards};

/// A stored entry of the bundled topology's stores as JSON (for `scorestream state dump`).
pub fn store_entry_json(store: &str, key: &[u8], value: &[u8]) -> serde_json::Value {
    use crate::state::codec::{decode_key, decode_value};
    let decoded = match store {
        game::STATE_STORE => decode_key::<String>(store, key).and_then(|k| {
            let v: game::StoredGameState = decode_value(store, value)?;
            let (game, churn) = v.into_parts();
            Ok(serde_json::json!({ "key": k, "value": game, "churn": churn }))
        }),
        churn::INACTIVITY_STORE => decode_key::<(u64, String)>(store, key).map(|(due, c)| {
            serde_json::json!({ "key": { "due": crate::gamification::time::rfc3339_ms(due as i64), "customer_id": c }, "value": value.first() })
        }),
        leaderboards::BOARDS_STORE => decode_key::<String>(store, key).and_then(|k| {
            let leaderboards::StoredBoard::V1(v) = decode_value(store, value)?;
            Ok(serde_json::json!({ "key": k, "value": v }))
        }),
        _ => Err(crate::state::StateError::UnknownStore(store.to_string())),
    };
    match decoded {
        Ok(mut v) => {
            v["store"] = serde_json::Value::from(store);
            v
        }
        Err(e) => serde_json::json!({
            "store": store,
            "key_hex": hex(key),
            "value_hex": hex(value),
            "error": e.to_string(),
        }),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
