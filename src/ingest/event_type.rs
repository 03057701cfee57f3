//! Event type names to lower snake case: `OrderPlaced`, `orderPlaced`, `order-placed`,
//! `order.placed`, `ORDER_PLACED` and ` Order Placed ` all become `order_placed`.

/// Normalizes an event type name. Any non-alphanumeric character separates words; a
/// lower-to-upper change starts a word; in a run of capitals the last one starts a new
/// word when a lower-case letter follows (`HTTPRequest` → `http_request`).
pub fn normalize_event_type(name: &str) -> String {
    // Fast path: already lower snake case (the common case on the hot path).
    let b = name.as_bytes();
    if !b.is_empty()
        && b[0] != b'_'
        && b[b.len() - 1] != b'_'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !name.contains("__")
    {
        return name.to_string();
    }
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    let mut pending_sep = false;
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            pending_sep = !out.is_empty();
            continue;
        }
        if c.is_uppercase() && !out.is_empty() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_lower) {
                pending_sep = true;
            }
        }
        if pending_sep {
            out.push('_');
            pending_sep = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize_event_type as n;

    #[test]
    fn every_spelling_of_order_placed() {
        for s in [
            "OrderPlaced",
            "orderPlaced",
            "order-placed",
            "order.placed",
            "ORDER_PLACED",
            " Order Placed ",
            "order_placed",
            "order__placed",
            "Order-Placed!",
        ] {
            assert_eq!(n(s), "order_placed", "{s:?}");
        }
    }

    #[test]
    fn acronyms_digits_and_seed_names() {
        assert_eq!(n("HTTPRequest"), "http_request");
        assert_eq!(n("QUESTION_PUBLISHED"), "question_published");
        assert_eq!(n("userLogin2FA"), "user_login2_fa");
        assert_eq!(n("data_usage"), "data_usage");
        assert_eq!(n("kyc_update"), "kyc_update");
        assert_eq!(n("video-uploaded"), "video_uploaded");
        assert_eq!(n("USER_LOGIN"), "user_login");
        assert_eq!(n("PostCreated"), "post_created");
    }

    #[test]
    fn nothing_left_is_empty() {
        assert_eq!(n(""), "");
        assert_eq!(n("  -._ "), "");
    }
}
