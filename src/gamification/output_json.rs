//! The JSON of a [`GameOutput`], written by hand: byte for byte what `serde_json` writes
//! for its derived `Serialize` (the tests in `output.rs` compare both over every body),
//! without serde's generic map path for the flattened body or escaping of constant keys.

use super::output::{GameOutput, OutputBody, PointsSource};

impl GameOutput {
    /// Appends the record value to `out`: byte for byte what `serde_json` writes for the
    /// derived `Serialize` (the tests compare both), written by hand because the field
    /// names are constants that need no escaping and serde's flattened body goes through
    /// its generic map path (issue 15 item 5: result JSON was 6-10 % of the topology).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut w = JsonObject::open(out);
        w.str("type", self.output_type);
        w.uint("schema_version", self.schema_version.into());
        w.str("result_id", self.result_id.as_str());
        w.str("customer_id", self.customer_id.as_str());
        w.str("event_id", self.event_id.as_str());
        w.str("occurred_at", self.occurred_at.as_str());
        w.str("rules_version", self.rules_version.as_str());
        self.body.write_members(&mut w);
        w.close();
    }
}

impl OutputBody {
    /// The body's members, after the head's.
    fn write_members(&self, w: &mut JsonObject<'_>) {
        match self {
            OutputBody::ScoreUpdated {
                score,
                value,
                previous,
            } => {
                w.str("score", score);
                w.float("value", *value);
                w.opt_float("previous", *previous);
            }
            OutputBody::PointsAwarded {
                point_type,
                points,
                uncapped,
                capped,
                source,
                total,
            } => {
                w.str("point_type", point_type);
                w.int("points", *points);
                w.int("uncapped", *uncapped);
                w.bool("capped", *capped);
                write_source(w, source);
                w.int("total", *total);
            }
            OutputBody::MissionProgress {
                mission,
                kind,
                progress,
                target,
            } => {
                w.str("mission", mission);
                w.str("kind", kind);
                w.float("progress", *progress);
                w.float("target", *target);
            }
            OutputBody::MissionCompleted { .. } => self.write_mission_completed(w),
            OutputBody::BadgeAwarded { .. } => self.write_badge_awarded(w),
            OutputBody::StreakUpdated {
                streak,
                current,
                longest,
                day,
                freezes_used,
            } => {
                w.str("streak", streak);
                w.uint("current", (*current).into());
                w.uint("longest", (*longest).into());
                w.str("day", day);
                w.uint("freezes_used", (*freezes_used).into());
            }
            OutputBody::TierChanged {
                from,
                to,
                direction,
                rolling_points,
            } => {
                w.opt_str("from", from.as_deref());
                w.opt_str("to", to.as_deref());
                w.str("direction", direction);
                w.int("rolling_points", *rolling_points);
            }
        }
    }
}

impl OutputBody {
    fn write_mission_completed(&self, w: &mut JsonObject<'_>) {
        let OutputBody::MissionCompleted {
            mission,
            name,
            completions,
            reward_point_type,
            reward_points,
            reward_badge,
        } = self
        else {
            return;
        };
        w.str("mission", mission);
        w.str("name", name);
        w.uint("completions", (*completions).into());
        w.opt_str("reward_point_type", reward_point_type.as_deref());
        w.opt_int("reward_points", *reward_points);
        w.opt_str("reward_badge", reward_badge.as_deref());
    }

    fn write_badge_awarded(&self, w: &mut JsonObject<'_>) {
        let OutputBody::BadgeAwarded {
            badge,
            name,
            level,
            level_name,
            previous_level,
        } = self
        else {
            return;
        };
        w.str("badge", badge);
        w.str("name", name);
        w.uint("level", (*level).into());
        w.str("level_name", level_name);
        w.uint("previous_level", (*previous_level).into());
    }
}

/// `"source":{"kind":…,"id":…}` of a points award.
fn write_source(w: &mut JsonObject<'_>, source: &PointsSource) {
    let (kind, id) = match source {
        PointsSource::Rule(id) => ("rule", id),
        PointsSource::Mission(id) => ("mission", id),
    };
    w.key("source");
    let mut s = JsonObject::open(w.out);
    s.str("kind", kind);
    s.str("id", id);
    s.close();
}

/// Writes one JSON object's members as `serde_json`'s compact formatter does. Keys are
/// this module's constants (plain ASCII, nothing to escape).
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObject<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, first: true }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    fn key(&mut self, key: &str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_str(self.out, value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    fn null(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn int(&mut self, key: &str, value: i64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// As serde_json (1.0.154 formats with zmij): the shortest round-trip form, `null` for
    /// NaN and infinities.
    fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        if value.is_finite() {
            self.out
                .extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.out.extend_from_slice(b"null");
        }
    }

    fn opt_int(&mut self, key: &str, value: Option<i64>) {
        match value {
            Some(v) => self.int(key, v),
            None => self.null(key),
        }
    }

    fn opt_float(&mut self, key: &str, value: Option<f64>) {
        match value {
            Some(v) => self.float(key, v),
            None => self.null(key),
        }
    }
}

/// A JSON string as `serde_json` escapes it: `"` and `\\`, the short escapes `\b \f \n
/// \r \t`, other control characters as `\u00xx` (lower-case hex); everything else as is.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Eight bytes at a time while none needs escaping (the usual case: ids, names, times).
    let mut plain = 0;
    while let Some(chunk) = bytes.get(plain..plain + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if needs_escape(word) {
            break;
        }
        plain += 8;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(plain) {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// True when one of the eight bytes of `word` is a control character (< 0x20), `"` or
/// `\\`: the bit tricks "has a zero byte" and "has a byte less than n" (exact, n ≤ 128).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
    below_space || has_zero(word ^ (ONES * b'"' as u64)) || has_zero(word ^ (ONES * b'\\' as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eight_byte_check_finds_every_byte_that_needs_escaping_at_every_position() {
        for b in 0..=255u8 {
            let expected = b < 0x20 || b == b'"' || b == b'\\';
            for pos in 0..8 {
                let mut word = *b"abcdefgh";
                word[pos] = b;
                assert_eq!(
                    needs_escape(u64::from_le_bytes(word)),
                    expected,
                    "{b:#x} at {pos}"
                );
            }
        }
        // Strings longer than a word, with the escape in the second or a later one.
        let long = "0123456789abcdef\"x\n0123456789";
        let mut out = Vec::new();
        write_json_str(&mut out, long);
        assert_eq!(out, serde_json::to_vec(long).unwrap());
    }
}
